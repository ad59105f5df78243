"""The worker's log: Celery's lines for the sweeper and the purge, every few seconds, and its
warning for a bulk message handed back, stay out of an operator's (and a newcomer's)
terminal unless passthru logs at DEBUG."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest
from celery.exceptions import Reject

from models.keys import TASK_EXECUTE_CALLS, TASK_PURGE, TASK_SWEEP
from worker.bulk_turns import HandBack
from worker.log_filters import quiet_upkeep


def _line(task: str) -> logging.LogRecord:
    record = logging.LogRecord(
        "celery.app.trace", logging.INFO, __file__, 1, "Task %s succeeded", (task,), None
    )
    record.data = {"id": "t-1", "name": task}
    return record


@pytest.fixture
def passthru_level() -> Iterator[logging.Logger]:
    logger = logging.getLogger("passthru")
    before = logger.level
    yield logger
    logger.setLevel(before)


@pytest.mark.parametrize("task", [TASK_SWEEP, TASK_PURGE])
def test_upkeep_lines_are_debug(passthru_level: logging.Logger, task: str) -> None:
    passthru_level.setLevel(logging.INFO)
    assert quiet_upkeep(_line(task)) is False
    passthru_level.setLevel(logging.DEBUG)
    record = _line(task)
    assert quiet_upkeep(record) is True
    assert record.levelname == "DEBUG"


def test_a_call_s_lines_stay(passthru_level: logging.Logger) -> None:
    passthru_level.setLevel(logging.INFO)
    record = _line(TASK_EXECUTE_CALLS)
    assert quiet_upkeep(record) is True
    assert record.levelname == "INFO"


def _rejected(reason: Exception) -> logging.LogRecord:
    try:
        raise Reject(reason, requeue=True)
    except Reject:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "celery.app.trace", logging.WARNING, __file__, 1, "Task %s rejected", ("x",), exc_info
    )
    record.data = {"id": "t-2", "name": TASK_EXECUTE_CALLS}
    return record


def test_a_hand_back_s_rejected_warning_is_debug_without_its_traceback(
    passthru_level: logging.Logger,
) -> None:
    # worker/tasks.py logs the hand-back in a line of its own
    passthru_level.setLevel(logging.INFO)
    record = _rejected(HandBack("its share of the threads"))
    assert quiet_upkeep(record) is False
    assert (record.levelname, record.exc_info) == ("DEBUG", None)


def test_any_other_rejection_stays_a_warning(passthru_level: logging.Logger) -> None:
    passthru_level.setLevel(logging.INFO)
    record = _rejected(ValueError("something else"))
    assert quiet_upkeep(record) is True
    assert record.levelname == "WARNING"
    assert record.exc_info is not None
