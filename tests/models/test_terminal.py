"""`passthru dev`'s terminal: one readable line per call, upkeep out of sight unless it did
something, and access lines only for the requests that went wrong."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from models.logs import CALLS_LOGGER
from models.terminal import TerminalFormatter, call_line, terminal_filter

AT = datetime(2026, 12, 1, 13, 2, 11).timestamp()


def _record(
    name: str, msg: str, args: tuple[object, ...] = (), **fields: object
) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    record.created = AT
    for key, value in fields.items():
        setattr(record, key, value)
    return record


def _call(**fields: object) -> logging.LogRecord:
    base: dict[str, object] = {
        "event": "call.finished",
        "call_id": "fc_01jx",
        "tenant_id": "tn_1",
        "app": "slack",
        "method": "POST",
        "path": "/api/chat.postMessage",
        "status": "completed",
        "attempt": 1,
        "network_code": "200",
        "error": None,
        "duration_ms": 312,
    }
    return _record(CALLS_LOGGER, "call %s %s", ("fc_01jx", "completed"), **{**base, **fields})


@pytest.fixture
def passthru_at_info() -> Iterator[None]:
    logger = logging.getLogger("passthru")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(before)


def test_a_finished_call_is_one_readable_line() -> None:
    line = TerminalFormatter().format(_call(attempt=2))
    assert line == (
        "13:02:11  fc_01jx  slack  POST /api/chat.postMessage  → 200 completed  312 ms"
        "  (2 attempts)"
    )


def test_a_failed_call_names_its_error() -> None:
    line = TerminalFormatter().format(
        _call(status="failed", network_code=None, error="timeout", duration_ms=None)
    )
    assert line == "13:02:11  fc_01jx  slack  POST /api/chat.postMessage  → failed timeout  0 ms"


def test_a_query_string_never_shows() -> None:
    fields = {"event": "call.finished", "path": "/v1/x?api_key=k-123#frag", "status": "completed"}
    line = call_line(fields, datetime(2026, 12, 1))
    assert "/v1/x " in line
    assert "k-123" not in line
    assert "api_key" not in line
    assert "frag" not in line


def test_only_the_end_of_a_call_is_shown(passthru_at_info: None) -> None:
    assert terminal_filter(_call()) is True
    retrying = _call(event="call.attempt", status="retrying")
    assert terminal_filter(retrying) is False
    assert retrying.levelname == "DEBUG"
    assert terminal_filter(_call(event="call.accepted")) is False


def test_upkeep_that_did_nothing_is_out_of_sight(passthru_at_info: None) -> None:
    beat = _record(
        "celery.beat", "Scheduler: Sending due task %s (%s)", ("sweep", "passthru.sweep")
    )
    received = _record("celery.worker.strategy", "Task %s received", ("passthru.execute_calls",))
    assert terminal_filter(beat) is False
    assert terminal_filter(received) is False
    # ... while what upkeep did, and every warning, stays
    assert terminal_filter(_record("passthru.sweeper", "sweep: %s", ({"due": 3},))) is True
    warning = _record("celery.beat", "Scheduler: Sending due task sweep (passthru.sweep)")
    warning.levelno, warning.levelname = logging.WARNING, "WARNING"
    assert terminal_filter(warning) is True


def test_upkeep_shows_at_debug() -> None:
    logger = logging.getLogger("passthru")
    before = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        assert terminal_filter(_call(event="call.accepted")) is True
    finally:
        logger.setLevel(before)


@pytest.mark.parametrize(
    ("method", "target", "status", "shown"),
    [
        (
            "POST",
            "/slack-passthrough-request?token=s3cret",
            400,
            "POST /slack-passthrough-request → 400",
        ),
        ("GET", "/function-calls", 401, "GET /function-calls → 401"),
        ("GET", "/function-calls?user_id=u", 200, None),
        ("GET", "/readyz", 503, None),
        ("GET", "/console/static/console.css", 404, None),
        # a connect link's token is a secret while the link works
        ("POST", "/connect/cs_tok3n-s3cret?x=1", 403, "POST /connect/… → 403"),
    ],
)
def test_access_lines_only_for_requests_that_went_wrong(
    method: str, target: str, status: int, shown: str | None
) -> None:
    record = _record(
        "uvicorn.access", '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", method, target, "1.1", status)
    )
    assert terminal_filter(record) is (shown is not None)
    if shown:
        assert TerminalFormatter().format(record) == f"13:02:11  {shown}"
