"""Logs: one JSON object per line in production, readable lines at a terminal (`text`), and
`passthru dev`'s own terminal format (`dev`, models/terminal.py).

Events carry their fields as `extra={"event": ..., "call_id": ..., ...}`; the JSON formatter
writes them next to the message. Never pass bodies or credentials: only ids, statuses,
codes and durations.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

# The logger of the call events (`call.accepted`, `call.attempt`, `call.finished`).
CALLS_LOGGER = "passthru.calls"
# Attributes every LogRecord has; anything else on a record is an event field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        fields.pop("event", None)
        return line + "".join(f" {k}={v}" for k, v in fields.items() if v is not None)


def configure_logging(fmt: Literal["json", "text", "dev"], level: str) -> None:
    """Route every logger through one stderr handler with the chosen format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if fmt == "dev":
        from models import terminal  # it builds on this module's TextFormatter

        terminal.install(handler)
    handler.set_name("passthru")
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "passthru"] + [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("passthru").setLevel(level)
    # One line per onward request is noise; passthru logs one line per call instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)


class Sometimes:
    """Whether a repeated warning is due: at most once per `every_s` (thread-safe), so that
    a cause that persists is logged, not repeated for each message it affects."""

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._clock = clock
        self._last = -float("inf")
        self._lock = threading.Lock()

    def due(self) -> bool:
        with self._lock:
            now = self._clock()
            if now - self._last < self._every_s:
                return False
            self._last = now
            return True
