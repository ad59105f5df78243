"""(l) A webhook burst: how fast passthru delivers a tenant's webhook events when a large
batch ends at once, against a bare client posting the same number of events to the same
receiver (the baseline, in the same run).

A tenant whose batch of 20,000 calls finishes within a minute gets 20,000 events (and one
`batch.completed` per batch of 1,000) at once. A worker process sends at most
`webhook_concurrency` of them at a time, and the rest wait on the tenant's list in Redis
until a sender has room (worker/webhooks/puller.py), so the events trail the drain: this
measures by how much.

The stack is (a)'s (Postgres, two workers) with beat, as a deployment runs it: its sweeper
is what publishes a delivery left behind again. The tenant's endpoint is a local receiver
(its own process, aiohttp) that answers 204 at once and counts each `webhook-id` once.
After a warm-up of 2,000 calls (until every event of them is received), N calls go through
the batch API against the instant upstream; figures: the drain (first submission to last
result stored, as (a)), the time from the first submission until the receiver has every
event, the events' rate, CPU per event by process, the workers' peak RSS (sampled) and the
deliveries that ended `failed`. The baseline: httpx's async client (the workers' client)
posting N bodies of a real event's size, signed, with `webhook_concurrency` times the
workers' number in flight; and aiohttp's client the same way, for what the receiver and the
loopback take (httpx's pool slows as it widens: at 128 in flight it is several times slower
than at 8).

    python -m bench.webhook_burst --receiver PORT   (the receiver alone)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from aiohttp import web
from sqlalchemy import text

from api.dev.embedded_redis import free_port
from bench import scenarios as sc
from bench.stack import Stack, descendants, rss_mib, stack
from models.settings import DEFAULT_WEBHOOK_CONCURRENCY

WARMUP_CALLS = 2_000
BATCH_SIZE = 1_000  # sc.submit_batches: one `batch.completed` event per batch
EVENTS_TIMEOUT_S = 600.0  # from the first submission; then the count so far is reported
WARMUP_TIMEOUT_S = 300.0
POLL_S = 0.05  # the calls final, while the drain lasts
COUNT_EVERY_S = 0.25  # the receiver's count
RSS_EVERY_S = 1.0  # the workers' RSS
PROGRESS_EVERY_S = 10.0
FALLBACK_BODY_BYTES = 600  # the baseline's body when no event came to measure one by
# A worker's log line at WARNING or worse: passthru's JSON lines, or Celery's own.
WARNING_OR_WORSE = re.compile(r'"level":\s*"(warning|error|critical)"|\b(WARNING|ERROR|CRITICAL)\b')
ROLES = ("api", "workers", "upstream", "receiver")


# ---- the receiver (its own process) ---------------------------------------------------


@dataclass
class Tally:
    """Distinct events since the last reset (an id seen before any reset counts once only)."""

    seen: set[str] = field(default_factory=set)
    calls: int = 0
    batches: int = 0
    others: int = 0
    duplicates: int = 0
    first: float | None = None
    last: float | None = None
    first_body_bytes: int | None = None

    def add(self, event_id: str, body_bytes: int) -> None:
        if event_id in self.seen:
            self.duplicates += 1
            return
        self.seen.add(event_id)
        if event_id.startswith("msg_fc_"):
            self.calls += 1
        elif event_id.startswith("msg_bt_"):
            self.batches += 1
        else:
            self.others += 1
        now = time.time()
        self.first = self.first or now
        self.last = now
        if self.first_body_bytes is None:
            self.first_body_bytes = body_bytes

    def reset(self) -> None:
        """A new count; the ids seen stay seen, so a late duplicate is not counted again."""
        self.calls = self.batches = self.others = self.duplicates = 0
        self.first = self.last = None

    def as_json(self) -> dict[str, Any]:
        return {
            "received": self.calls + self.batches + self.others,
            "calls": self.calls,
            "batches": self.batches,
            "others": self.others,
            "duplicates": self.duplicates,
            "first": self.first,
            "last": self.last,
            "first_body_bytes": self.first_body_bytes,
        }


def receiver_app() -> web.Application:
    """POST /hook: 204 at once, counted by `webhook-id`; GET /count; POST /reset; GET /ready."""
    tally = Tally()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        tally.add(request.headers.get("webhook-id", ""), len(body))
        return web.Response(status=204)

    async def count(_: web.Request) -> web.Response:
        return web.json_response(tally.as_json())

    async def reset(_: web.Request) -> web.Response:
        tally.reset()
        return web.Response(status=204)

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    app.router.add_post("/reset", reset)
    app.router.add_get("/ready", ready)
    return app


def run_receiver(port: int) -> None:
    web.run_app(
        receiver_app(), host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096
    )


@dataclass(frozen=True)
class Receiver:
    """The bench's side of the receiver process."""

    origin: str
    # One connection for all the polls: a client a poll costs the bench's own CPU, which
    # the workers would miss on a small machine.
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    @property
    def hook_url(self) -> str:
        return f"{self.origin}/hook"

    def count(self) -> dict[str, Any]:
        return dict(self.client.get(f"{self.origin}/count").json())

    def reset(self) -> None:
        self.client.post(f"{self.origin}/reset").raise_for_status()

    def close(self) -> None:
        self.client.close()


def start_receiver(s: Stack) -> Receiver:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "bench.webhook_burst", "--receiver", str(port)]
    s.processes.start_server("receiver", argv, f"{origin}/ready")
    return Receiver(origin)


# ---- passthru's side ----------------------------------------------------------------------


def set_endpoint(s: Stack, key: str, url: str) -> None:
    """PUT /webhook-endpoint: the tenant's events go to `url` (the secret shown is unused:
    the receiver does not check signatures)."""
    r = httpx.put(
        f"{s.api_url}/webhook-endpoint",
        json={"url": url},
        headers={"Authorization": f"Bearer {key}"},
    )
    r.raise_for_status()


def expected_events(calls: int) -> int:
    """An event per call and one per batch of BATCH_SIZE (the last one maybe smaller)."""
    return calls + -(-calls // BATCH_SIZE)


def deliveries_by_status(s: Stack) -> dict[str, int]:
    with s.engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM webhook_delivery GROUP BY status"))
        return {str(status): int(n) for status, n in rows}


def attempts(s: Stack) -> int:
    with s.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM webhook_attempt")).scalar_one())


def tree_rss_mib(pid: int) -> float:
    total = 0.0
    for each in descendants(pid):
        try:
            total += rss_mib(each)
        except OSError:
            continue
    return total


def worker_names(s: Stack) -> list[str]:
    return [name for name in s.procs if name.startswith("worker")]


def worker_warnings(s: Stack) -> dict[str, Any]:
    """The workers' WARNING (and worse) lines: how many, and the first few."""
    lines = [
        line
        for name in worker_names(s)
        for line in s.procs[name].output().splitlines()
        if WARNING_OR_WORSE.search(line)
    ]
    return {"count": len(lines), "first": lines[:5]}


@dataclass
class Watch:
    """What the waiting loop saw: when the calls were all final, the receiver's last
    count, and each worker's peak RSS (its process tree, sampled)."""

    drain_ended: float | None = None
    count: dict[str, Any] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)

    def sample_rss(self, s: Stack) -> None:
        for name in worker_names(s):
            try:
                rss = tree_rss_mib(s.procs[name].pid)
            except OSError:  # ended
                continue
            self.peak_rss_mib[name] = max(self.peak_rss_mib.get(name, 0.0), round(rss, 1))


@dataclass
class Every:
    """True from `due()` once every `period_s` (the first time once `period_s` has passed
    since `last`, a time.monotonic())."""

    period_s: float
    last: float = float("-inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.period_s:
            return False
        self.last = now
        return True


def wait_for_events(
    s: Stack, receiver: Receiver, calls_target: int, events: int, deadline: float, label: str
) -> Watch:
    """Poll until `calls_target` calls are final and the receiver has `events` events (or
    `deadline`, a time.monotonic(), passes); progress to stderr every PROGRESS_EVERY_S.
    The calls are counted every POLL_S, as (a) does; the receiver, which times the events
    itself, and the workers' RSS less often: the bench's polls take CPU from the stack."""
    watch = Watch()
    count_due, rss_due = Every(COUNT_EVERY_S), Every(RSS_EVERY_S)
    report_due = Every(PROGRESS_EVERY_S, time.monotonic())
    while True:
        if watch.drain_ended is None and sc.finished(s) >= calls_target:
            watch.drain_ended = time.perf_counter()
        if count_due.due():
            watch.count = receiver.count()
        if rss_due.due():
            watch.sample_rss(s)
        received = int(watch.count["received"])
        if received >= events and watch.drain_ended is not None:
            watch.sample_rss(s)
            return watch
        if time.monotonic() > deadline:
            sc.say(f"{label}: stopped waiting with {received}/{events} events received")
            return watch
        if report_due.due():
            drain = "all" if watch.drain_ended else sc.finished(s)
            sc.say(f"{label}: {received}/{events} events received, calls final: {drain}")
        time.sleep(POLL_S if watch.drain_ended is None else COUNT_EVERY_S)


def warm_up(s: Stack, key: str, receiver: Receiver) -> dict[str, Any]:
    sc.say(f"(l) warm-up: {WARMUP_CALLS} calls, until every event is received")
    base = sc.finished(s)
    started = sc.submit_batches(s, key, WARMUP_CALLS)
    deadline = time.monotonic() + WARMUP_TIMEOUT_S
    events = expected_events(WARMUP_CALLS)
    watch = wait_for_events(s, receiver, base + WARMUP_CALLS, events, deadline, "(l) warm-up")
    return {
        "calls": WARMUP_CALLS,
        "events_received": watch.count["received"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def per_event(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    return sc.cpu_ms_per_call(before, after, n) if n else {}


def burst(s: Stack, key: str, receiver: Receiver, n: int) -> dict[str, Any]:
    """N calls through the batch API; the drain, and their events to the last one."""
    events = expected_events(n)
    receiver.reset()
    statuses_before = deliveries_by_status(s)
    attempts_before = attempts(s)
    base = sc.finished(s)
    sc.say(f"(l) passthru: {n} calls through the batch API, {events} events to receive")
    cpu_before = sc.cpu_by_role(s, ROLES)
    started = sc.submit_batches(s, key, n)
    submitted = time.perf_counter()
    started_wall = time.time() - (time.perf_counter() - started)
    deadline = time.monotonic() - (time.perf_counter() - started) + EVENTS_TIMEOUT_S
    watch = wait_for_events(s, receiver, base + n, events, deadline, "(l)")
    cpu_after = sc.cpu_by_role(s, ROLES)
    count = watch.count
    received = int(count["received"])
    all_in = received >= events
    last = count["last"]
    span = (last - started_wall) if last else None
    statuses = deliveries_by_status(s)
    burst_statuses = {k: v - statuses_before.get(k, 0) for k, v in statuses.items()}
    drain_s = watch.drain_ended - started if watch.drain_ended else None
    return {
        "calls": n,
        "events_expected": events,
        "events_received": received,
        "call_events": count["calls"],
        "batch_events": count["batches"],
        "duplicates": count["duplicates"],
        "all_received": all_in,
        "submit_seconds": round(submitted - started, 2),
        "drain_seconds": round(drain_s, 2) if drain_s else None,
        "drain_calls_per_s": round(n / drain_s, 1) if drain_s else None,
        "first_event_after_s": round(count["first"] - started_wall, 2) if count["first"] else None,
        "seconds_to_all_events": round(span, 2) if all_in and span else None,
        "seconds_to_last_event_received": round(span, 2) if span else None,
        "events_per_s": round(received / span, 1) if span else 0.0,
        # CPU from the first submission to the last event (or the timeout), over the events
        # received: the calls' own work is in it, as it is in what a burst costs.
        "cpu_ms_per_event": per_event(cpu_before, cpu_after, received),
        "worker_peak_rss_mib": watch.peak_rss_mib,
        "deliveries": burst_statuses,
        "failed_deliveries": burst_statuses.get("failed", 0),
        "attempts": attempts(s) - attempts_before,
        "event_body_bytes": count["first_body_bytes"],
    }


# ---- the baseline ---------------------------------------------------------------------------


def signed_headers(event_id: str, body: bytes, key: bytes) -> dict[str, str]:
    """Standard Webhooks' headers, as passthru sends them (models/webhooks/signing.py)."""
    timestamp = int(time.time())
    mac = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
    }


Post = Callable[[str], Awaitable[None]]  # POST one signed body with this webhook-id


async def send_all(post: Post, n: int, concurrency: int, prefix: str) -> float:
    """`post` n events (ids `prefix`0, 1, ...), `concurrency` at a time; the seconds it took."""
    ids = iter(range(n))

    async def sender() -> None:
        for i in ids:
            await post(f"{prefix}{i}")

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return time.perf_counter() - started


async def with_httpx(url: str, n: int, body: bytes, concurrency: int) -> float:
    """httpx's async client, bare (its pool as wide as `concurrency`, its defaults else)."""
    key = secrets.token_bytes(24)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def post(event_id: str) -> None:
            headers = signed_headers(event_id, body, key)
            (await client.post(url, content=body, headers=headers)).raise_for_status()

        return await send_all(post, n, concurrency, "msg_httpx_")


async def with_aiohttp(url: str, n: int, body: bytes, concurrency: int) -> float:
    """aiohttp's client: what the receiver and the loopback take, with a leaner client."""
    key = secrets.token_bytes(24)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(event_id: str) -> None:
            headers = signed_headers(event_id, body, key)
            async with session.post(url, data=body, headers=headers) as r:
                r.raise_for_status()
                await r.read()

        return await send_all(post, n, concurrency, "msg_aiohttp_")


Client = Callable[[str, int, bytes, int], Coroutine[Any, Any, float]]


def baseline(
    receiver: Receiver, client: Client, n: int, body_bytes: int, concurrency: int
) -> dict[str, Any]:
    name = client.__name__.removeprefix("with_")
    sc.say(f"(l) baseline: {name} posting {n} bodies of {body_bytes} B, {concurrency} at a time")
    receiver.reset()
    body = b'{"filler":"' + b"x" * max(0, body_bytes - 13) + b'"}'
    seconds = asyncio.run(client(receiver.hook_url, n, body, concurrency))
    return {
        "events": n,
        "received": receiver.count()["received"],
        "body_bytes": len(body),
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "events_per_s": round(n / seconds, 1),
    }


def percent(part: float, whole: float) -> float | None:
    return round(part / whole * 100, 1) if whole else None


# ---- the scenario -----------------------------------------------------------------------------


def webhook_burst(db: str, workers: int, n: int) -> dict[str, Any]:
    with stack(db) as s:
        s.env["PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "true"
        receiver = start_receiver(s)
        key = sc.prepare(s)
        set_endpoint(s, key, receiver.hook_url)
        for i in range(workers):
            s.start_worker(f"worker{i}")
        s.start_beat()
        warmup = warm_up(s, key, receiver)
        passthru = burst(s, key, receiver, n)
        warnings = worker_warnings(s)
        concurrency = DEFAULT_WEBHOOK_CONCURRENCY * workers
        body_bytes = passthru["event_body_bytes"] or FALLBACK_BODY_BYTES
        base = baseline(receiver, with_httpx, n, body_bytes, concurrency)
        ceiling = baseline(receiver, with_aiohttp, n, body_bytes, concurrency)
        receiver.close()
    rate = passthru["events_per_s"]
    return {
        "workers": workers,
        "warmup": warmup,
        "passthru": passthru,
        "worker_warnings": warnings,
        "baseline_httpx": base,
        "events_pct_of_baseline": percent(rate, base["events_per_s"]),
        "baseline_aiohttp": ceiling,
        "events_pct_of_aiohttp": percent(rate, ceiling["events_per_s"]),
    }


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(r: dict[str, Any]) -> str:
    p, hx, ah = r["passthru"], r["baseline_httpx"], r["baseline_aiohttp"]
    cpu = p["cpu_ms_per_event"]
    rss = max(p["worker_peak_rss_mib"].values(), default=0.0)
    to_all = (
        f"every event after {_num(p['seconds_to_all_events'], '.1f')} s"
        if p["all_received"]
        else f"{p['events_received']} of {p['events_expected']} events received"
    )
    return "\n".join(
        [
            f"{'webhook burst':<16}{p['calls']} calls: drain {_num(p['drain_calls_per_s'], '.0f')}"
            f"/s; {to_all}: {p['events_per_s']:.0f} events/s; {p['failed_deliveries']} failed",
            f"{'':<16}{_num(r['events_pct_of_baseline'], '.1f')}% of bare httpx's "
            f"{hx['events_per_s']:.0f}/s, {_num(r['events_pct_of_aiohttp'], '.1f')}% of "
            f"aiohttp's {ah['events_per_s']:.0f}/s ({hx['concurrency']} in flight)",
            f"{'':<16}CPU ms per event: workers {cpu.get('workers', 0):.2f}, "
            f"API {cpu.get('api', 0):.2f}, Postgres {cpu.get('postgres', 0):.2f}, "
            f"Redis {cpu.get('redis', 0):.2f}; worker peak RSS {rss:.0f} MiB; "
            f"worker warnings {r['worker_warnings']['count']}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_burst")
    parser.add_argument("--receiver", type=int, metavar="PORT", required=True)
    run_receiver(parser.parse_args().receiver)


if __name__ == "__main__":
    main()
