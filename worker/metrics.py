"""What a worker process counts, for Prometheus: served on its own port
(PASSTHRU_WORKER_METRICS_PORT, one per worker process; 0 turns it off)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from worker.calls.results import Result

REGISTRY = CollectorRegistry()

CALLS_FINISHED = Counter(
    "passthru_calls_finished",
    "Calls that reached a final state, by status and app",
    ["status", "app"],
    registry=REGISTRY,
)
ATTEMPTS = Counter(
    "passthru_attempts",
    "Attempts recorded, by what they ended with: a status class (2xx...), or an error",
    ["app", "outcome"],
    registry=REGISTRY,
)
UPSTREAM_SECONDS = Histogram(
    "passthru_upstream_seconds",
    "Time of one exchange with the upstream (redirects and body included), per app",
    ["app"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "passthru_rate_limit_wait_seconds",
    "How long rate limits held an attempt back, per app (attempts that waited)",
    ["app"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
HANDED_BACK = Counter(
    "passthru_calls_handed_back",
    "Calls handed back unsent to wait for a rate-limit slot or a pause, per app",
    ["app"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "passthru_webhook_attempts",
    "Webhook delivery attempts, by outcome: delivered, retry, failed, gone",
    ["outcome"],
    registry=REGISTRY,
)

# Counted by the process that runs the sweeper.
WORKERS_LOST = Counter(
    "passthru_workers_lost",
    "Worker processes found dead (their heartbeat ended) by the sweeper",
    registry=REGISTRY,
)
LEASES_RECOVERED = Counter(
    "passthru_leases_recovered",
    "Running calls taken back by the sweeper, by why (worker_lost: its process's heartbeat "
    "ended; lease_expired: the attempt ran past its deadline) and what became of them "
    "(retried, or ended)",
    ["reason", "outcome"],
    registry=REGISTRY,
)
MESSAGES_REPUBLISHED = Counter(
    "passthru_messages_republished",
    "Calls published again by the sweeper, by why: held by a dead worker (worker_lost), "
    "unclaimed for PASSTHRU_REPUBLISH_AFTER_S (stale), or every waiting call after Redis "
    "lost its data (broker_lost)",
    ["reason"],
    registry=REGISTRY,
)
CALLS_HELD = Gauge(
    "passthru_worker_calls_held",
    "Calls this process's Celery threads hold now, from their claim to their last stored "
    "result (at most three per PASSTHRU_MAX_CONNECTIONS, worker/budget.py)",
    registry=REGISTRY,
)
MESSAGES_WAITING = Gauge(
    "passthru_worker_messages_waiting",
    "Messages this process's Celery threads have taken and not yet claimed, because the "
    "calls held leave no room for them",
    registry=REGISTRY,
)
MESSAGES_HANDED_BACK = Counter(
    "passthru_worker_messages_handed_back",
    "Bulk messages this process gave back, unclaimed, to the end of their shard's queue: "
    "their shard held its share of the Celery threads while other work waited (worker/budget.py)",
    ["queue"],
    registry=REGISTRY,
)


def outcome_label(network_code: str | None, error: str | None) -> str:
    if network_code:
        return f"{network_code[0]}xx"
    return error or "unknown"


def count_attempt(app: str, r: Result) -> None:
    """Count one stored attempt: its outcome, how long the upstream took, how long rate
    limits held it, and the call's end if it ended."""
    ATTEMPTS.labels(app, outcome_label(r.network_code, r.error)).inc()
    if r.network_code is not None or r.error in ("timeout", "network_error"):
        UPSTREAM_SECONDS.labels(app).observe(r.duration_ms / 1000)
    if r.rate_wait_ms:
        RATE_LIMIT_WAIT_SECONDS.labels(app).observe(r.rate_wait_ms / 1000)
    if r.status.is_final:
        CALLS_FINISHED.labels(str(r.status), app).inc()
