"""Celery tasks: thin wrappers; arguments are ids only, never credentials or bodies."""

from __future__ import annotations

import logging

from celery.exceptions import Reject

from models.db.engine import utcnow
from models.keys import (
    BULK_QUEUES,
    QUEUE_BULK,
    TASK_DELIVER_WEBHOOKS,
    TASK_EXECUTE_CALLS,
    TASK_PURGE,
    TASK_SWEEP,
    TASK_TAKE_BULK,
)
from models.settings import get_settings
from worker import metrics
from worker.app import app
from worker.budget import bulk_budget
from worker.bulk_turns import HandBack, bulk_turns, put_in_turn
from worker.calls.pipeline import execute_calls as run_calls
from worker.calls.results import tally
from worker.priority import run_in_background
from worker.retention import purge, purge_connect_links
from worker.runtime import get_runtime, get_webhook_runtime
from worker.sweeper import sweep as run_sweep
from worker.webhooks.deliveries import deliver

log = logging.getLogger("passthru.worker")


@app.task(name=TASK_EXECUTE_CALLS)
def execute_calls(call_ids: list[str]) -> dict[str, int]:
    """Run these calls: one from the interactive queue (a retry, or a call published again),
    behind the interactive lane's threads. A bulk message's ids (a countdown's, or an older
    API process's) are put in their tenants' turn instead (worker/bulk_turns.py). The
    result: calls per status."""
    queue = (execute_calls.request.delivery_info or {}).get("routing_key")
    runtime = get_runtime()
    if queue in BULK_QUEUES:
        put_in_turn(runtime.engine, runtime.publisher, call_ids)
        return {}
    run_in_background()
    with bulk_budget().hold(len(call_ids)):
        return tally(call_ids, run_calls(call_ids, runtime))


@app.task(name=TASK_TAKE_BULK)
def take_bulk() -> dict[str, int]:
    """Run the next tenant's chunk of the bulk lane, in turn (worker/bulk_turns.py); the
    message carries no ids. The result: calls per status (none when no chunk was due). A
    message that waited for a turn while other messages waited for a thread goes back to
    its queue."""
    run_in_background()
    try:
        chunk = bulk_turns().take(str(take_bulk.request.id))
    except HandBack as exc:
        metrics.MESSAGES_HANDED_BACK.labels(QUEUE_BULK).inc()
        log.info("a bulk message handed back to its queue: %s", exc)
        raise Reject(exc, requeue=True) from None
    if chunk is None:
        return {}
    with bulk_budget().hold(len(chunk.call_ids), chunk.tenant_id, reserved=True):
        return tally(chunk.call_ids, run_calls(chunk.call_ids, get_runtime()))


@app.task(name=TASK_SWEEP)
def sweep() -> dict[str, int]:
    """Republish lost or due calls; take back calls whose worker died."""
    return run_sweep(get_runtime()).as_dict()


@app.task(name=TASK_DELIVER_WEBHOOKS)
def deliver_webhooks(delivery_ids: list[str]) -> dict[str, str]:
    """Sign and POST these webhook events to their receivers (one attempt each)."""
    run_in_background()
    return deliver(delivery_ids, get_webhook_runtime())


@app.task(name=TASK_PURGE)
def purge_old_calls() -> int:
    """Delete finished calls older than PASSTHRU_RETENTION_DAYS, in small batches, and the
    connect links that expired over an hour ago."""
    engine, now = get_runtime().engine, utcnow()
    purge_connect_links(engine, now)
    return purge(engine, now, get_settings().retention_days)
