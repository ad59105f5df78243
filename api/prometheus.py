"""The API's Prometheus figures: its own counters, and what it reads on each scrape (calls
waiting, from the database; queue lengths per lane and the global rate limiter's state per
app, from Redis, so every worker's bookings and pauses count). Served on
PASSTHRU_METRICS_PORT, and on the API port only to PASSTHRU_METRICS_TOKEN."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from models.calls.states import CallStatus
from models.catalog.apps import Catalog
from models.db.engine import as_utc, utcnow
from models.db.tables import FunctionCall, WorkerProcess
from models.interactive_due import BulkDue, InteractiveDue
from models.keys import (
    BULK_DUE,
    BULK_QUEUES,
    HOOKS_DUE,
    LIST_INTERACTIVE,
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    QUEUE_WEBHOOKS,
)
from models.ratelimit.rules import KEY_PREFIX, interval_ms, key_of
from models.webhooks.due import DeliveriesDue

log = logging.getLogger("passthru.metrics")
_calls = FunctionCall.__table__  # type: ignore[attr-defined]
_workers = WorkerProcess.__table__  # type: ignore[attr-defined]

# Counted by the API process as it answers (one registry per process).
COUNTERS = CollectorRegistry()
CALLS_ACCEPTED = Counter(
    "passthru_calls_accepted", "Calls accepted, by lane", ["lane"], registry=COUNTERS
)
CALLS_REJECTED = Counter(
    "passthru_calls_rejected",
    "Calls refused at submission (not written), by error",
    ["error"],
    registry=COUNTERS,
)
REQUESTS_REFUSED = Counter(
    "passthru_requests_refused",
    "Requests refused by a limit before any work: a body too large, or a per-tenant bound",
    ["reason"],
    registry=COUNTERS,
)
DEFAULT_WAITS_SKIPPED = Counter(
    "passthru_default_waits_skipped",
    "Submissions answered 202 at once instead of waiting PASSTHRU_DEFAULT_WAIT_S: "
    "no long poll of the tenant's was free",
    registry=COUNTERS,
)

# A scrape reads at most this many limiter keys (SCAN), so a huge keyspace cannot stall it.
MAX_KEYS = 50_000


class PassthruCollector(Collector):
    def __init__(self, client: redis.Redis, catalog: Catalog, engine: Engine | None = None) -> None:
        self._client = client
        self._due = InteractiveDue(client)
        self._bulk = BulkDue(client)
        self._hooks = DeliveriesDue(client)
        self._catalog = catalog
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        if self._engine is not None:
            yield from self._calls(self._engine)
        yield from self._redis()

    def _calls(self, engine: Engine) -> Iterator[Metric]:
        """From the database (the source of truth): calls waiting, and the oldest one due."""
        waiting = GaugeMetricFamily(
            "passthru_calls_waiting", "Calls not finished, by status", labels=["status"]
        )
        oldest = GaugeMetricFamily(
            "passthru_oldest_queued_call_age_seconds",
            "Age of the oldest queued call that is due (0: none): a backlog growing",
        )
        processes = GaugeMetricFamily(
            "passthru_worker_processes",
            "Worker processes with a lease, by state: alive (renewed), or expired (dead, until "
            "the sweeper has taken their calls back)",
            labels=["state"],
        )
        now = utcnow()
        try:
            with engine.connect() as conn:
                for status in (CallStatus.QUEUED, CallStatus.RUNNING, CallStatus.RETRYING):
                    n = conn.execute(
                        select(func.count()).select_from(_calls).where(_calls.c.status == status)
                    ).scalar_one()
                    waiting.add_metric([str(status)], float(n))
                for state, current in (("alive", True), ("expired", False)):
                    fresh = _workers.c.expires_at >= now
                    n = conn.execute(
                        select(func.count())
                        .select_from(_workers)
                        .where(fresh if current else ~fresh)
                    ).scalar_one()
                    processes.add_metric([state], float(n))
                first = conn.execute(
                    select(func.min(_calls.c.created_at)).where(
                        _calls.c.status == CallStatus.QUEUED,
                        or_(_calls.c.next_attempt_at.is_(None), _calls.c.next_attempt_at <= now),
                    )
                ).scalar_one()
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer (%s)", exc)
            return
        age = (now - as_utc(first)).total_seconds() if first is not None else 0.0  # type: ignore[operator]
        oldest.add_metric([], max(0.0, age))
        yield from (waiting, oldest, processes)

    def _redis(self) -> Iterator[Metric]:
        queued = GaugeMetricFamily(
            "passthru_queue_messages",
            "Messages waiting in a lane: a Celery queue, the interactive calls' list, or the "
            "bulk lane's chunks",
            labels=["queue"],
        )
        paused = GaugeMetricFamily(
            "passthru_rate_limit_paused_keys",
            "Keys (app or account) an upstream has paused, per app",
            labels=["app"],
        )
        pause_left = GaugeMetricFamily(
            "passthru_rate_limit_pause_seconds_max",
            "Longest pause still to run, per app",
            labels=["app"],
        )
        busy = GaugeMetricFamily(
            "passthru_rate_limit_busy_keys",
            "Keys with slots booked ahead, per app and declared limit",
            labels=["app", "limit"],
        )
        booked = GaugeMetricFamily(
            "passthru_rate_limit_booked_ahead_seconds_max",
            "How far ahead the busiest key's slots are booked, per app and declared limit",
            labels=["app", "limit"],
        )
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for queue in (QUEUE_INTERACTIVE, QUEUE_WEBHOOKS, *BULK_QUEUES):
                    pipe.llen(queue)
                interactive, webhooks, *bulk = pipe.execute()
            queued.add_metric([QUEUE_INTERACTIVE], float(interactive))
            # The bulk lane's messages, over its shards.
            queued.add_metric([QUEUE_BULK], float(sum(bulk)))
            queued.add_metric([QUEUE_WEBHOOKS], float(webhooks))
            # Single calls due now, over every tenant's list.
            queued.add_metric([LIST_INTERACTIVE], float(self._due.depth()))
            # The bulk lane's chunks of ids due (up to 100 calls each), over every tenant's
            # list: each waits for one of the bulk lane's messages to take it.
            queued.add_metric([BULK_DUE], float(self._bulk.depth()))
            # Webhook deliveries due now, over every tenant's list: each waits for a
            # worker's sender to have room for its tenant.
            queued.add_metric([HOOKS_DUE], float(self._hooks.depth()))
            self._limiter(paused, pause_left, busy, booked)
        except redis.RedisError as exc:
            log.warning("metrics: Redis did not answer (%s)", exc)
            return
        yield from (queued, paused, pause_left, busy, booked)

    def _limiter(self, *families: GaugeMetricFamily) -> None:
        paused, pause_left, busy, booked = families
        keys = []
        for key in self._client.scan_iter(match=f"{KEY_PREFIX}:*", count=1000):
            keys.append(key.decode())
            if len(keys) >= MAX_KEYS:
                break
        seconds, micros = self._client.time()
        now_ms = seconds * 1000 + micros // 1000
        values: list[Any] = self._client.mget(keys) if keys else []
        pauses: dict[str, list[float]] = {}
        ahead: dict[tuple[str, str], list[float]] = {}
        for key, raw in zip(keys, values, strict=True):
            if raw is None or (left := (int(raw) - now_ms) / 1000) <= 0:
                continue
            of = key_of(key)
            if of is None or of.app is None:
                continue
            if of.kind == "pause":
                pauses.setdefault(of.app, []).append(left)
            elif of.index is not None and (label := self._limit_label(of.app, of.index)):
                ahead.setdefault((of.app, label), []).append(left)
        for app, lefts in sorted(pauses.items()):
            paused.add_metric([app], len(lefts))
            pause_left.add_metric([app], max(lefts))
        for (app, label), lefts in sorted(ahead.items()):
            busy.add_metric([app, label], len(lefts))
            booked.add_metric([app, label], max(lefts))

    def _limit_label(self, slug: str, index: int) -> str | None:
        app = self._catalog.get(slug)
        if app is None or index >= len(app.rate_limits):
            return None
        spec = app.rate_limits[index]
        path = f" {spec.path}" if spec.path else ""
        return f"{spec.limit:g}/{spec.period_s:g}s {spec.scope}{path} ({interval_ms(spec)} ms)"


class ApiMetrics(Collector):
    """Everything the API serves: this process's counters, then the figures read now."""

    def __init__(self, state: PassthruCollector) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        yield from COUNTERS.collect()
        yield from self._state.collect()


def serve_metrics(port: int, metrics: Collector) -> Callable[[], None]:
    """Serve `metrics` on `port` from a thread (0: not at all); returns how to stop. A port
    already taken is a warning, not a failure: the API serves on without it."""
    if not port:
        return lambda: None
    try:
        server, thread = start_http_server(port, registry=metrics)
    except OSError as exc:
        log.warning(
            "api metrics: port %d is taken (%s); set PASSTHRU_METRICS_PORT to a free one, or 0",
            port,
            exc,
        )
        return lambda: None
    log.info("api metrics on port %d", port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
