"""Which of Celery's own log lines a worker quiets (worker/app.py installs the filter)."""

from __future__ import annotations

import logging

from models.keys import TASK_PURGE, TASK_SWEEP
from worker.bulk_turns import HandBack


def quiet_upkeep(record: logging.LogRecord) -> bool:
    """Celery's "received" and "succeeded" lines for the sweeper and the purge (every few
    seconds) at DEBUG: the sweeper logs what it did when it did something, and a newcomer's
    terminal shows their own calls go by. And its "rejected" warning, with a traceback, for
    a bulk message handed back (worker/tasks.py logs it in a line)."""
    data = getattr(record, "data", None)
    name = data.get("name") if isinstance(data, dict) else None
    if name in (TASK_SWEEP, TASK_PURGE) and record.levelno == logging.INFO:
        return _at_debug(record)
    if record.exc_info and isinstance(getattr(record.exc_info[1], "reason", None), HandBack):
        record.exc_info = record.exc_text = None  # an expected hand-back, logged by the task
        return _at_debug(record)
    return True


def _at_debug(record: logging.LogRecord) -> bool:
    record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    return logging.getLogger("passthru").isEnabledFor(logging.DEBUG)
