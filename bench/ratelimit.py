"""The rate-limit benchmark: passthru's global limiter against Celery's per-worker
`rate_limit`, on this machine, in one run.

    python -m bench.ratelimit [--quick] [--db postgres|sqlite] [--only ceiling,hol,lane]

It repeats the scenarios of tests/e2e/test_rate_limits.py at a larger scale and measures
them instead of asserting:

ceiling  An app limited to 10 calls/s (scope app, burst 1) gets 200 calls in one batch,
         with 2 and then 4 worker processes. The stand-in upstream records when each
         request arrives: the most it saw in any 1-s window shows whether the limit held
         across processes, the mean rate and utilization whether it was used in full.
         Baseline: a Celery task with `rate_limit="10/s"`, on as many worker instances of
         one pool process each (bench/naive_ratelimited.py); Celery's bucket is per worker.
hol      Head of line: 2,000 calls queued to an app limited to 2/s, then one call to an
         unlimited app (`Prefer: wait=30`): how long it takes, and how much of the backlog
         had gone by then. Baseline: 2,000 `rate_limit="2/s"` tasks and then one unlimited
         task on the same Celery queue.
lane     5,000 calls in a batch to an unlimited app whose upstream answers after 50 ms,
         then one `Prefer: wait=30` call: how long it takes, and how much of the batch had
         finished by then.

In hol and lane one call (or unlimited task) goes first, before the backlog, and is not
counted: the first call of a fresh stack pays one-time costs that have nothing to do with
what is queued ahead of it. Celery's unlimited task is waited for at most 600 s (120 s with
--quick); it queues behind the whole backlog, which Celery drains far slower than that.

Each measurement runs on a fresh stack (bench/stack.py: its own Redis, database, upstream,
API and workers), torn down before the next. Prints a table and writes it as JSON to
bench/results/ratelimit-<timestamp>.json. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import redis
import yaml
from celery import Celery

from bench import naive_ratelimited as naive
from bench import scenarios as sc
from bench.__main__ import _postgres_answers, run_header, write_results
from bench.stack import BENCH_ORIGIN, Stack, stack

UPSTREAM = ["bench.upstream", "--record"]
CEILING_APP, CEILING_RATE = "limited10", 10.0
BACKLOG_APP, BACKLOG_RATE = "limited2", 2.0
UNLIMITED_APP = "bench"  # sc.APPS_YAML's app: no declared limit
WAIT_HEADER = "wait=30"
LANE_DELAY_MS = 50
PASSTHRU_HOL_WORKERS = 2


@dataclass(frozen=True)
class Sizes:
    ceiling_calls: int
    ceiling_workers: tuple[int, ...]
    backlog: int
    lane_batch: int
    # How long to wait for Celery's unlimited task behind its rate-limited backlog: it
    # waits its turn in the queue, which can take far longer than the rest of the run.
    celery_hol_wait_s: float


FULL = Sizes(200, (2, 4), backlog=2_000, lane_batch=5_000, celery_hol_wait_s=600)
QUICK = Sizes(100, (2, 4), backlog=1_000, lane_batch=2_000, celery_hol_wait_s=120)


# ---- measuring --------------------------------------------------------------------------


def most_in_any_second(times: list[float]) -> int:
    """The most arrivals in any window (t - 1 s, t]."""
    times = sorted(times)
    most, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        most = max(most, i - j + 1)
    return most


def ceiling_figures(
    arrivals: list[float], submitted_at: float, seconds: float, limit_per_s: float
) -> dict[str, Any]:
    """What the upstream saw of one ceiling run. `utilization_pct` is the ideal span at the
    limit, (n - 1) / limit, over the span from first to last arrival: 100 means the limit
    was used exactly, below it time was lost, above it the limit was exceeded."""
    arrivals = sorted(arrivals)
    n = len(arrivals)
    span = arrivals[-1] - arrivals[0] if n > 1 else 0.0
    ideal = (n - 1) / limit_per_s
    gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]
    return {
        "received": n,
        "max_in_1s": most_in_any_second(arrivals),
        "mean_per_s": round(n / span, 2) if span else None,
        "seconds": round(seconds, 2),
        "arrival_span_s": round(span, 2),
        "first_arrival_after_submit_s": round(arrivals[0] - submitted_at, 3) if n else None,
        "utilization_pct": round(ideal / span * 100, 1) if span else None,
        "gap_ms": {
            "min": round(min(gaps_ms), 1) if gaps_ms else None,
            "median": round(statistics.median(gaps_ms), 1) if gaps_ms else None,
            "max": round(max(gaps_ms), 1) if gaps_ms else None,
        },
        "per_second": per_second(arrivals),
    }


def per_second(arrivals: list[float]) -> list[int]:
    """Arrivals in each whole second counted from the first one: the shape of the run."""
    if not arrivals:
        return []
    counts = Counter(int(t - arrivals[0]) for t in arrivals)
    return [counts.get(i, 0) for i in range(max(counts) + 1)]


def arrivals(s: Stack, path: str) -> list[float]:
    """When each request to `path` reached the stand-in upstream (Unix seconds)."""
    history: dict[str, list[float]] = httpx.get(f"{s.upstream_url}/_history").json()
    return history.get(path, [])


def wait_for(
    what: str, done: Callable[[], bool], timeout_s: float, progress: Callable[[], str]
) -> bool:
    """Poll `done` every 50 ms until it holds (True) or `timeout_s` passes (False), saying
    `progress()` every 15 s."""
    deadline = time.monotonic() + timeout_s
    last_report = time.monotonic()
    while not done():
        if time.monotonic() > deadline:
            sc.say(f"{what}: gave up after {timeout_s:.0f} s ({progress()})")
            return False
        if time.monotonic() - last_report > 15:
            sc.say(f"{what}: {progress()}")
            last_report = time.monotonic()
        time.sleep(0.05)
    return True


# ---- passthru ---------------------------------------------------------------------------


def apps_yaml() -> str:
    """The bench app (no limit) plus the two limited apps, each served by the stand-in
    upstream under /<slug>/."""
    limited = {
        slug: {
            "name": slug,
            "base_url": f"{BENCH_ORIGIN}/{slug}",
            "allowed_hosts": ["bench-upstream.invalid"],
            "auth": {"type": "bearer"},
            "rate_limits": [{"scope": "app", "limit": rate, "period_s": 1, "burst": 1}],
        }
        for slug, rate in ((CEILING_APP, int(CEILING_RATE)), (BACKLOG_APP, int(BACKLOG_RATE)))
    }
    return sc.APPS_YAML + yaml.safe_dump(limited)


@contextmanager
def passthru_stack(
    db: str, workers: int, accounts: tuple[str, ...], upstream: list[str] = UPSTREAM
) -> Iterator[tuple[Stack, str]]:
    """A fresh stack with the apps registered, the API and `workers` worker processes;
    yields it and the tenant's key."""
    with stack(db, upstream=upstream) as s:
        key = sc.prepare(s, apps_yaml(), accounts)
        for i in range(workers):
            s.start_worker(f"worker{i}")
        yield s, key


@dataclass(frozen=True)
class Waited:
    """One `Prefer: wait` call as its client saw it, and when the upstream received it."""

    status: str  # the call's status in the answer, or "HTTP <code>"
    latency_s: float  # submit to answer
    at_upstream_s: float | None  # submit to its arrival at the upstream
    answered_at: float  # Unix seconds, to compare with the upstream's arrival times

    def figures(self) -> dict[str, Any]:
        at_upstream = None if self.at_upstream_s is None else round(self.at_upstream_s, 3)
        return {
            "status": self.status,
            "latency_s": round(self.latency_s, 3),
            "at_upstream_after_s": at_upstream,
        }


def waited_call(s: Stack, key: str, app: str, path: str) -> Waited:
    """One call with `Prefer: wait=30` to `path` of the unlimited app (its own path, so
    the upstream's record of it stands apart)."""
    headers = {"Authorization": f"Bearer {key}", "X-User-ID": sc.USER, "Prefer": WAIT_HEADER}
    body = {"method": "GET", "url": path}
    submitted_at = time.time()
    started = time.perf_counter()
    r = httpx.post(f"{s.api_url}/{app}-passthrough-request", json=body, headers=headers, timeout=60)
    latency = time.perf_counter() - started
    status = r.json().get("status", "?") if r.status_code in (200, 202) else f"HTTP {r.status_code}"
    seen = arrivals(s, path)
    return Waited(status, latency, seen[0] - submitted_at if seen else None, time.time())


def sent_before(s: Stack, path: str, moment: float) -> int:
    """How many requests to `path` had reached the upstream by `moment` (Unix seconds):
    sent, if not yet recorded as finished."""
    return sum(1 for t in arrivals(s, path) if t <= moment)


def warm_up(s: Stack, key: str) -> None:
    """One `Prefer: wait` call before the backlog, not counted: the first interactive call
    of a fresh stack also pays one-time costs (connections, first use of code paths) that
    have nothing to do with what waits ahead of it."""
    waited = waited_call(s, key, UNLIMITED_APP, "/warm-up")
    if waited.status != "completed":
        raise RuntimeError(f"warm-up call ended {waited.status}")


def passthru_ceiling(db: str, workers: int, n: int) -> dict[str, Any]:
    """n calls to the 10/s app in one batch; every arrival at the upstream recorded."""
    with passthru_stack(db, workers, (CEILING_APP,)) as (s, key):
        sc.say(f"ceiling, passthru, {workers} workers: {n} calls to an app limited to 10/s")
        submitted_at = time.time()
        started = sc.submit_batches(s, key, n, app=CEILING_APP)
        ended = sc.wait_finished(s, n, timeout_s=n / CEILING_RATE * 3 + 60)
        seen = arrivals(s, f"/{CEILING_APP}/items")
    return ceiling_figures(seen, submitted_at, ended - started, CEILING_RATE)


def passthru_head_of_line(db: str, backlog: int) -> dict[str, Any]:
    """A backlog of the 2/s app, then one call to the unlimited app."""
    workers = PASSTHRU_HOL_WORKERS
    with passthru_stack(db, workers, (BACKLOG_APP, UNLIMITED_APP)) as (s, key):
        warm_up(s, key)
        sc.say(f"head-of-line, passthru: {backlog} calls to an app limited to 2/s")
        started = sc.submit_batches(s, key, backlog, app=BACKLOG_APP)
        submit_s = time.perf_counter() - started
        sc.say("head-of-line, passthru: one Prefer: wait call to an unlimited app")
        waited = waited_call(s, key, UNLIMITED_APP, "/interactive")
        done = sc.finished(s, BACKLOG_APP)
        sent = sent_before(s, f"/{BACKLOG_APP}/items", waited.answered_at)
    return {
        "workers": workers,
        "backlog": backlog,
        "backlog_submit_s": round(submit_s, 2),
        **waited.figures(),
        "backlog_finished": done,
        "backlog_sent": sent,
    }


def passthru_lane(db: str, n: int) -> dict[str, Any]:
    """A large batch to an upstream answering after 50 ms, then one interactive call to the
    same app."""
    workers = PASSTHRU_HOL_WORKERS
    upstream = [*UPSTREAM, "--delay-ms", str(LANE_DELAY_MS)]
    with passthru_stack(db, workers, (UNLIMITED_APP,), upstream) as (s, key):
        warm_up(s, key)
        sc.say(f"lane, passthru: {n} calls in batches, upstream answering after 50 ms")
        started = sc.submit_batches(s, key, n)
        submit_s = time.perf_counter() - started
        sc.say("lane, passthru: one Prefer: wait call to the same app")
        waited = waited_call(s, key, UNLIMITED_APP, "/interactive")
        # The warm-up and the waited call are of the same app, and finished too.
        done = sc.finished(s, UNLIMITED_APP) - 1 - (waited.status == "completed")
        sent = sent_before(s, "/items", waited.answered_at)
    return {
        "workers": workers,
        "batch": n,
        "upstream_delay_ms": LANE_DELAY_MS,
        "batch_submit_s": round(submit_s, 2),
        **waited.figures(),
        "batch_finished": done,
        "batch_sent": sent,
    }


# ---- Celery's rate_limit ----------------------------------------------------------------


@contextmanager
def celery_stack(db: str, workers: int) -> Iterator[tuple[Stack, Celery, redis.Redis]]:
    """A fresh stack with `workers` instances of the naive worker, each
    `--pool prefork -c 1`: one process running tasks, one token bucket. Yields the stack, a
    Celery app to send with and a Redis client on the baselines' broker."""
    with stack(db, upstream=UPSTREAM) as s:
        for i in range(workers):
            name = f"naive{i}"
            argv = ["--pool", "prefork", "-c", "1", "-n", f"{name}@%h"]
            sc.start_celery_worker(s, "bench.naive_ratelimited", name, *argv)
        sender = Celery("naive-rl-driver", broker=sc.naive_broker(s))
        client = redis.Redis.from_url(sc.naive_broker(s))
        try:
            yield s, sender, client
        finally:
            client.close()
            sender.close()


def send_tasks(sender: Celery, task: str, url: str, n: int) -> None:
    with sender.producer_or_acquire() as producer:
        for i in range(n):
            sender.send_task(task, args=[f"{url}?i={i}"], producer=producer)


def counter(client: redis.Redis, key: str) -> int:
    return int(client.get(key) or 0)


def unlimited_ran(client: redis.Redis) -> bool:
    """Whether the unlimited task has run since its record was last cleared."""
    return int(client.exists(naive.UNLIMITED_RAN_KEY)) == 1


def celery_ceiling(db: str, workers: int, n: int) -> dict[str, Any]:
    """n `rate_limit="10/s"` tasks sent at once; every arrival at the upstream recorded."""
    with celery_stack(db, workers) as (s, sender, client):
        sc.say(f"ceiling, Celery rate_limit=10/s, {workers} workers: {n} tasks")
        done_key = naive.done_key(naive.TASK_10PS)
        submitted_at = time.time()
        started = time.perf_counter()
        send_tasks(sender, naive.TASK_10PS, f"{s.upstream_url}/naive10/items", n)
        finished = wait_for(
            "Celery ceiling",
            lambda: counter(client, done_key) >= n,
            n / CEILING_RATE * 3 + 60,
            lambda: f"{counter(client, done_key)}/{n} finished",
        )
        if not finished:
            raise RuntimeError(f"Celery ran {counter(client, done_key)} of {n} tasks")
        ended = time.perf_counter()
        seen = arrivals(s, "/naive10/items")
    return ceiling_figures(seen, submitted_at, ended - started, CEILING_RATE)


def celery_warm_up(s: Stack, sender: Celery, client: redis.Redis) -> None:
    """One unlimited task before the backlog, not counted (as passthru's warm-up call)."""
    sender.send_task(naive.TASK_UNLIMITED, args=[f"{s.upstream_url}/warm-up"])
    if not wait_for("Celery warm-up", lambda: unlimited_ran(client), 60, lambda: "not run yet"):
        raise RuntimeError("Celery's warm-up task did not run")
    client.delete(naive.UNLIMITED_RAN_KEY)


def celery_head_of_line(db: str, backlog: int, wait_s: float) -> dict[str, Any]:
    """A backlog of `rate_limit="2/s"` tasks, then one unlimited task on the same queue.
    Waits up to `wait_s` for it to run; if it has not, reports that lower bound, how far
    the backlog got, how many messages were still in the broker's queue, and an estimate
    of when it would run (the time waited scaled by backlog / backlog finished: the queue
    is first in, first out, and the unlimited task is last)."""
    workers = PASSTHRU_HOL_WORKERS
    with celery_stack(db, workers) as (s, sender, client):
        celery_warm_up(s, sender, client)
        sc.say(f"head-of-line, Celery: {backlog} tasks with rate_limit=2/s")
        send_tasks(sender, naive.TASK_2PS, f"{s.upstream_url}/naive2/items", backlog)
        sc.say(f"head-of-line, Celery: one unlimited task on the same queue (wait <= {wait_s:g} s)")
        sent_at = time.time()
        sender.send_task(naive.TASK_UNLIMITED, args=[f"{s.upstream_url}/naive-fast/items"])
        backlog_key = naive.done_key(naive.TASK_2PS)
        ran = wait_for(
            "Celery head-of-line",
            lambda: unlimited_ran(client),
            wait_s,
            lambda: f"unlimited task not run yet; backlog {counter(client, backlog_key)} done",
        )
        result: dict[str, Any] = {"workers": workers, "backlog": backlog}
        if not ran:
            waited = time.time() - sent_at
            done = counter(client, backlog_key)
            return {
                **result,
                "status": f"not run after {waited:.0f} s",
                "latency_s": None,
                "latency_at_least_s": round(waited, 1),
                "estimated_latency_s": round(waited * backlog / done) if done else None,
                "backlog_finished": done,
                "backlog_sent": sent_before(s, "/naive2/items", time.time()),
                "still_in_broker_queue": int(client.llen("celery")),
            }
        record = json.loads(client.get(naive.UNLIMITED_RAN_KEY) or b"{}")
        sent = sent_before(s, "/naive2/items", record["at"])
    return {
        **result,
        "status": "completed",
        "latency_s": round(record["at"] - sent_at, 3),
        "backlog_finished": record["backlog_done"],
        "backlog_sent": sent,
    }


# ---- the run ----------------------------------------------------------------------------


def run_ceiling(db: str, sizes: Sizes) -> dict[str, Any]:
    return {
        str(workers): {
            "passthru": passthru_ceiling(db, workers, sizes.ceiling_calls),
            "celery": celery_ceiling(db, workers, sizes.ceiling_calls),
        }
        for workers in sizes.ceiling_workers
    }


def run_head_of_line(db: str, sizes: Sizes) -> dict[str, Any]:
    return {
        "passthru": passthru_head_of_line(db, sizes.backlog),
        "celery": celery_head_of_line(db, sizes.backlog, sizes.celery_hol_wait_s),
    }


def run_lane(db: str, sizes: Sizes) -> dict[str, Any]:
    return {"passthru": passthru_lane(db, sizes.lane_batch)}


PARTS: dict[str, Callable[[str, Sizes], dict[str, Any]]] = {
    "ceiling": run_ceiling,
    "hol": run_head_of_line,
    "lane": run_lane,
}


def _num(value: float | None, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{suffix}"


def _latency_line(label: str, r: dict[str, Any], done: str) -> str:
    """One waited call: its latency, what had finished by then (`done`) and its status."""
    latency, status = _num(r["latency_s"], ".3f", " s"), r["status"]
    if r["latency_s"] is None:  # Celery's task had not run when the benchmark stopped waiting
        latency = f"> {r['latency_at_least_s']:.0f} s"
        if r.get("estimated_latency_s"):
            status += f"; ~{r['estimated_latency_s']} s estimated"
    if r.get("at_upstream_after_s") is not None:
        status += f"; at the upstream after {r['at_upstream_after_s']:.3f} s"
    return f"         {label:<20}latency {latency:>10}   {done} ({status})"


def table(results: dict[str, Any], sizes: Sizes) -> str:
    lines: list[str] = []
    if ceiling := results.get("ceiling"):
        lines += [
            f"ceiling: app limited to 10/s (scope app, burst 1), {sizes.ceiling_calls} calls "
            "submitted at once",
            f"{'workers':>7}  {'system':<20}{'max in 1 s':>11}{'mean/s':>9}{'seconds':>9}"
            f"{'utilization':>13}",
        ]
        for workers, systems in ceiling.items():
            for label, name in (("passthru", "passthru"), ("Celery rate_limit", "celery")):
                r = systems[name]
                lines.append(
                    f"{workers:>7}  {label:<20}{r['max_in_1s']:>11}"
                    f"{_num(r['mean_per_s'], '.1f'):>9}{r['seconds']:>9.1f}"
                    f"{_num(r['utilization_pct'], '.0f', '%'):>13}"
                )
    if hol := results.get("hol"):
        lines.append(
            f"head-of-line: {sizes.backlog} calls queued to an app limited to 2/s, then one "
            f"call to an unlimited app ({PASSTHRU_HOL_WORKERS} workers)"
        )
        for label, name in (("passthru", "passthru"), ("Celery rate_limit", "celery")):
            r = hol[name]
            done = (
                f"backlog finished {r['backlog_finished']} of {r['backlog']}, "
                f"{r['backlog_sent']} sent"
            )
            lines.append(_latency_line(label, r, done))
    if lane := results.get("lane"):
        r = lane["passthru"]
        lines += [
            f"lane: {sizes.lane_batch}-call batch, upstream answering after {LANE_DELAY_MS} ms, "
            f"then one Prefer: {WAIT_HEADER} call ({PASSTHRU_HOL_WORKERS} workers)",
            _latency_line(
                "passthru",
                r,
                f"batch finished {r['batch_finished']} of {r['batch']}, {r['batch_sent']} sent",
            ),
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--only", default=",".join(PARTS), help="parts to run, e.g. ceiling")
    args = parser.parse_args()
    if args.db == "postgres" and not _postgres_answers():
        print("no Postgres (set BENCH_DATABASE_URL); using SQLite", file=sys.stderr)
        args.db = "sqlite"
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    results: dict[str, Any] = {}
    for part in (p.strip() for p in args.only.split(",")):
        print(part, file=sys.stderr, flush=True)
        part_started = time.monotonic()
        results[part] = PARTS[part](args.db, sizes)
        print(f"    done in {time.monotonic() - part_started:.0f} s", file=sys.stderr, flush=True)
    seconds = round(time.monotonic() - started, 1)
    report = {
        **run_header(),
        "db": args.db,
        "quick": args.quick,
        "sizes": asdict(sizes),
        "celery_workers": "N instances of `celery worker --pool prefork -c 1`",
        "wall_seconds": seconds,
        "results": results,
    }
    print(table(results, sizes))
    print(f"wall time {seconds:.0f} s")
    write_results("ratelimit", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
