"""The worker's log: Celery's lines for the sweeper and the purge, every few seconds, stay
out of an operator's (and a newcomer's) terminal unless passthru logs at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from models.keys import TASK_EXECUTE_CALLS, TASK_PURGE, TASK_SWEEP
from worker.app import _quiet_upkeep


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
    assert _quiet_upkeep(_line(task)) is False
    passthru_level.setLevel(logging.DEBUG)
    record = _line(task)
    assert _quiet_upkeep(record) is True
    assert record.levelname == "DEBUG"


def test_a_call_s_lines_stay(passthru_level: logging.Logger) -> None:
    passthru_level.setLevel(logging.INFO)
    record = _line(TASK_EXECUTE_CALLS)
    assert _quiet_upkeep(record) is True
    assert record.levelname == "INFO"
