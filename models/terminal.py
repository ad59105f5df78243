"""The log format of `passthru dev`'s terminal (`PASSTHRU_LOG_FORMAT=dev`): one readable line
per call when it ends, upkeep at DEBUG unless it did something, and only the API requests a
newcomer needs to see. The production formats (`json`, `text`) are not touched by it.

    13:02:11  fc_01J…  slack  POST /api/chat.postMessage  → 200 completed  312 ms  (2 attempts)

A call's line shows its URL's path alone: a query string can hold a secret (`?api_key=`).
An access line shows a connect link's path without its token, which works until it is used.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from models.keys import TASK_PURGE, TASK_SWEEP
from models.logs import CALLS_LOGGER, TextFormatter

# Celery's per-task lines ("received", "succeeded"): the call lines say what ran.
_TASK_LOGGERS = frozenset({"celery.worker.strategy", "celery.app.trace"})
# Paths whose access lines nobody at a terminal needs: probes and the console's assets.
_QUIET_PATHS = ("/healthz", "/readyz", "/metrics", "/favicon.ico", "/console/static/")
# The first HTTP status an access line is shown for: the calls have lines of their own.
SHOWN_FROM_STATUS = 400


# A connect link's token: whoever has it may connect an account as the tenant's end user.
_CONNECT_TOKEN = re.compile(r"^/connect/[^/]+")


def _path(url: Any) -> str:
    """The path of `url`, without its query string or fragment."""
    return urlsplit(str(url or "")).path or "/"


def _shown_path(url: Any) -> str:
    """The path of an API request as a line shows it: a connect link's token left out."""
    return _CONNECT_TOKEN.sub("/connect/…", _path(url))


def call_line(fields: Mapping[str, Any], at: datetime) -> str:
    """A call event (`call.finished`, `call.attempt`, `call.accepted`) as one line."""
    head = (
        f"{at:%H:%M:%S}  {fields.get('call_id')}  {fields.get('app')}  "
        f"{fields.get('method') or '?'} {_path(fields.get('path'))}"
    )
    if fields.get("event") == "call.accepted":
        return f"{head}  accepted"
    code, error = fields.get("network_code"), fields.get("error")
    outcome = " ".join(str(part) for part in (code, fields.get("status"), error) if part)
    line = f"{head}  → {outcome}  {fields.get('duration_ms') or 0} ms"
    attempts = fields.get("attempt") or 1
    return f"{line}  ({attempts} attempts)" if attempts > 1 else line


def access_line(args: Any, at: datetime) -> str | None:
    """uvicorn's access record as `time  METHOD /path → status`, or None when it is not
    worth a line (a success, a probe, an asset)."""
    if not isinstance(args, tuple) or len(args) != 5:
        return None
    _client, method, target, _version, status = args
    path = _shown_path(target)
    if not isinstance(status, int) or status < SHOWN_FROM_STATUS:
        return None
    if path.startswith(_QUIET_PATHS):
        return None
    return f"{at:%H:%M:%S}  {method} {path} → {status}"


class TerminalFormatter(TextFormatter):
    """Call events and access lines in their own short form; anything else as `text`."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created)
        if record.name == CALLS_LOGGER:
            return call_line(vars(record), at)
        if record.name == "uvicorn.access":
            return access_line(record.args, at) or super().format(record)
        return super().format(record)


def is_upkeep(record: logging.LogRecord) -> bool:
    """Lines that say only that something ran: a call's accepted or not-yet-final event,
    beat sending the sweep or the purge, Celery's received and succeeded lines."""
    if record.name == CALLS_LOGGER:
        return getattr(record, "event", None) != "call.finished"
    if record.levelno != logging.INFO:
        return False
    if record.name == "celery.beat":
        message = record.getMessage()
        return "Sending due task" in message and any(t in message for t in (TASK_SWEEP, TASK_PURGE))
    return record.name in _TASK_LOGGERS


def terminal_filter(record: logging.LogRecord) -> bool:
    """Upkeep goes to DEBUG (shown with PASSTHRU_LOG_LEVEL=DEBUG), access lines not worth
    showing are dropped, the rest passes."""
    if record.name == "uvicorn.access":
        return access_line(record.args, datetime.now()) is not None
    if is_upkeep(record):
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger("passthru").isEnabledFor(logging.DEBUG)
    return True


def install(handler: logging.Handler) -> None:
    """Make `handler` the terminal's: its format and filter, uvicorn's access lines through
    it, uvicorn's start-up lines (the banner says it all) only when something is wrong."""
    handler.setFormatter(TerminalFormatter())
    handler.addFilter(terminal_filter)
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = [handler]
    access.propagate = False
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
