"""Celery tasks: thin wrappers; arguments are ids only, never credentials or bodies."""

from __future__ import annotations

from models.keys import TASK_EXECUTE_CALL, TASK_SWEEP
from worker.app import app
from worker.runtime import get_runtime


@app.task(name=TASK_EXECUTE_CALL)
def execute_call(call_id: str) -> str | None:
    from worker.pipeline import execute_call as run

    status = run(call_id, get_runtime())
    return None if status is None else str(status)


@app.task(name=TASK_SWEEP)
def sweep() -> dict[str, int]:
    from worker.sweeper import sweep as run

    return run(get_runtime()).as_dict()
