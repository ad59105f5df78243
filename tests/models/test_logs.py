"""Log lines: JSON objects with the event's fields, or readable text."""

from __future__ import annotations

import json
import logging

from models.logs import JsonFormatter, TextFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("passthru.worker", logging.INFO, "x.py", 1, "call %s", ("c1",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_the_event_fields() -> None:
    line = JsonFormatter().format(_record(event="call.finished", call_id="c1", duration_ms=12))
    data = json.loads(line)
    assert data["msg"] == "call c1"
    assert data["level"] == "info"
    assert data["logger"] == "passthru.worker"
    assert (data["event"], data["call_id"], data["duration_ms"]) == ("call.finished", "c1", 12)
    assert "args" not in data


def test_text_lines_are_for_people() -> None:
    line = TextFormatter().format(_record(event="call.finished", status="completed", error=None))
    assert line.endswith("INFO passthru.worker: call c1 status=completed")
