"""Log lines: JSON objects with the event's fields, or readable text."""

from __future__ import annotations

import json
import logging

from models.logs import JsonFormatter, Sometimes, TextFormatter


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


def test_a_repeated_warning_is_due_once_per_period() -> None:
    now = [100.0]
    sometimes = Sometimes(30.0, clock=lambda: now[0])
    seen = []
    for step in (0.0, 1.0, 28.0, 1.0, 5.0, 30.0):
        now[0] += step
        seen.append(sometimes.due())
    # due at 100, not at 101 or 129, due at 130, not at 135, due at 165
    assert seen == [True, False, False, True, False, True]
