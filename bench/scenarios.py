"""The benchmark scenarios: passthru and its baselines, measured in the same run."""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import redis
from celery import Celery
from sqlalchemy import text

from api.dev.harness import Proc
from bench.stack import BENCH_ORIGIN, Stack, cpu_s, own_cpu_s, postgres_cpu_s, rss_mib
from models.accounts.tenants import create_tenant

APPS_YAML = f"""
bench:
  name: Bench upstream
  base_url: {BENCH_ORIGIN}
  allowed_hosts: [bench-upstream.invalid]
  auth: {{type: bearer}}
"""
USER = "bench-user"
FINAL = "('completed', 'failed', 'cancelled')"


def say(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def prepare(s: Stack, apps_yaml: str = APPS_YAML, accounts: Sequence[str] = ("bench",)) -> str:
    """Register the apps (the bench app unless told), start the API, make a tenant and one
    account per app in `accounts`; return the key."""
    apps = s.tmp / "apps.yaml"
    apps.write_text(apps_yaml)
    s.env["PASSTHRU_APPS_FILE"] = str(apps)
    s.start_api()
    _, key = create_tenant(s.engine, "bench")
    for app in accounts:
        r = httpx.post(
            f"{s.api_url}/connected-accounts",
            json={"app": app, "credentials": {"api_key": "bench-key"}},
            headers={"Authorization": f"Bearer {key}", "X-User-ID": USER},
        )
        r.raise_for_status()
    return key


def finished(s: Stack, app: str | None = None) -> int:
    """Calls in a final state, of every app or of one."""
    query = f"SELECT count(*) FROM function_call WHERE status IN {FINAL}"
    with s.engine.connect() as conn:
        if app is None:
            return int(conn.execute(text(query)).scalar_one())
        return int(conn.execute(text(f"{query} AND app = :app"), {"app": app}).scalar_one())


def wait_finished(
    s: Stack, target: int, timeout_s: float, on_progress: Callable[[int], None] | None = None
) -> float:
    deadline = time.monotonic() + timeout_s
    last_report = 0.0
    while True:
        done = finished(s)
        if on_progress:
            on_progress(done)
        if done >= target:
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {target} calls finished in {timeout_s} s")
        if time.monotonic() - last_report > 5:
            say(f"{done}/{target} finished")
            last_report = time.monotonic()
        time.sleep(0.05)


def submit_batches(s: Stack, key: str, n: int, query: str = "", app: str = "bench") -> float:
    """Submit n calls to `app` in batches of 1,000 (the last one smaller if n is not a
    multiple) from two client threads; return the start time."""
    calls = [
        {
            "function": f"{app}-passthrough-request",
            "params": {"method": "GET", "url": f"/items?i={i}{query}"},
        }
        for i in range(min(n, 1000))
    ]
    headers = {"Authorization": f"Bearer {key}", "X-User-ID": USER}
    sizes = [1000] * (n // 1000) + ([n % 1000] if n % 1000 else [])

    def send(batch_sizes: list[int]) -> None:
        with httpx.Client(base_url=s.api_url, headers=headers, timeout=120) as client:
            for size in batch_sizes:
                body = {"calls": calls[:size]}
                client.post("/function-calls/batch", json=body).raise_for_status()

    started = time.perf_counter()
    threads = [threading.Thread(target=send, args=(sizes[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return started


def passthru_role(name: str) -> str:
    """The role of the stack's process `name` in cpu_by_role: all workers are one."""
    return "workers" if "worker" in name else name


def cpu_by_role(
    s: Stack,
    roles: tuple[str, ...] = ("api", "workers", "upstream"),
    role_of: Callable[[str], str] = passthru_role,
) -> dict[str, float]:
    """CPU seconds used so far by the stack's processes in each of `roles` (each process's
    role `role_of(its name)`, passthru_role by default: the API, all workers together with
    their interactive lane processes, the stand-in upstream), Redis (a redis-server) and, on
    Postgres, the database: where a call's CPU goes."""
    used = dict.fromkeys(roles, 0.0)
    for proc in s.procs.values():
        role = role_of(proc.name)
        if role in used and proc.alive():
            used[role] += cpu_s(proc.pid)
    if s.redis.pid is not None:
        used["redis"] = own_cpu_s(s.redis.pid)
    if s.database_url.startswith("postgresql"):
        used["postgres"] = postgres_cpu_s()
    return used


def cpu_ms_per_call(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """Each role's CPU between two `cpu_by_role` readings, in ms per call of `n`."""
    return {role: round((after[role] - before[role]) * 1000 / n, 3) for role in after}


def passthru_throughput(s: Stack, key: str, n: int, query: str = "") -> dict[str, Any]:
    base = finished(s)
    cpu_before = cpu_by_role(s)
    started = submit_batches(s, key, n, query)
    submitted = time.perf_counter()
    ended = wait_finished(s, base + n, timeout_s=max(120, n / 50))
    cpu_after = cpu_by_role(s)
    return {
        "calls": n,
        "seconds": round(ended - started, 2),
        "submit_seconds": round(submitted - started, 2),
        "calls_per_s": round(n / (ended - started), 1),
        # CPU per call is steadier than calls/s on a shared machine: it does not count
        # the time other processes took the cores.
        "cpu_ms_per_call": cpu_ms_per_call(cpu_before, cpu_after, n),
    }


# ---- baselines -------------------------------------------------------------------------


def direct_sync(url: str, n: int) -> dict[str, Any]:
    with httpx.Client() as client:
        started = time.perf_counter()
        for _ in range(n):
            client.get(url, headers={"Authorization": "Bearer x"}).read()
        seconds = time.perf_counter() - started
    return {"calls": n, "seconds": round(seconds, 2), "calls_per_s": round(n / seconds, 1)}


def direct_concurrent(url: str, n: int, concurrency: int) -> dict[str, Any]:
    from worker.net.egress import EgressPolicy
    from worker.net.transport import make_async_client

    async def run() -> float:
        client = make_async_client(
            "aiohttp",
            policy=EgressPolicy(allow_private=True),
            max_connections=concurrency,
            connect_timeout_s=10,
            read_timeout_s=60,
        )
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                r = await client.get(url, headers={"Authorization": "Bearer x"})
                await r.aread()

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        seconds = time.perf_counter() - started
        await client.aclose()
        return seconds

    seconds = asyncio.run(run())
    return {
        "calls": n,
        "seconds": round(seconds, 2),
        "calls_per_s": round(n / seconds, 1),
        "concurrency": concurrency,
    }


def naive_broker(s: Stack) -> str:
    """The baselines' broker: database 1 of the stack's Redis (passthru uses another)."""
    return s.redis.url.rsplit("/", 1)[0] + "/1"


def start_celery_worker(s: Stack, module: str, name: str, *extra: str) -> Proc:
    """Start `celery -A module worker` (plus `extra` options) on the baselines' broker, once
    it says it is ready."""
    broker = naive_broker(s)
    env = {**s.env, "NAIVE_REDIS_URL": broker}
    proc = s.processes.start(
        name,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            module,
            "worker",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            *extra,
        ],
        env,
    )
    proc.wait_for_output(" ready.")
    return proc


def naive_celery(s: Stack, url: str, n: int) -> dict[str, Any]:
    broker = naive_broker(s)
    proc = start_celery_worker(s, "bench.naive_celery", "naive")
    client = redis.Redis.from_url(broker)
    try:
        client.delete("naive:done")
        sender = Celery("naive-driver", broker=broker)  # a fresh app: this run's Redis
        started = time.perf_counter()
        with sender.producer_or_acquire() as producer:
            for _ in range(n):
                sender.send_task("naive.call", args=[url], producer=producer)
        deadline = time.monotonic() + max(120, n / 5)
        while int(client.get("naive:done") or 0) < n:
            if time.monotonic() > deadline:
                raise RuntimeError("naive Celery did not finish")
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    finally:
        client.close()
        s.stop(proc)
    return {
        "calls": n,
        "seconds": round(seconds, 2),
        "calls_per_s": round(n / seconds, 1),
        "pool": "prefork, default concurrency",
    }


# ---- latency figures --------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(statistics.median(values), 2),
        "p99": round(q[98], 2),
        "max": round(max(values), 2),
    }


# ---- backlog ----------------------------------------------------------------------------


def backlog(s: Stack, key: str, n: int, api_pid: int) -> dict[str, Any]:
    redis_before = s.redis_memory()
    api_rss_before = rss_mib(api_pid)
    say(f"queueing {n} calls with no worker running")
    submit_batches(s, key, n)
    redis_after = s.redis_memory()
    api_rss_after = rss_mib(api_pid)
    say("draining with one worker")
    worker = s.start_worker("drain")
    rss: dict[str, float] = {}
    marks = {10_000: "rss_at_10k_mib", n: "rss_at_end_mib"}

    def progress(done: int) -> None:
        for mark, name in marks.items():
            if done >= mark and name not in rss:
                rss[name] = round(rss_mib(worker.process.pid), 1)

    started = time.perf_counter()
    ended = wait_finished(s, n, timeout_s=max(600, n / 100), on_progress=progress)
    s.stop(worker)
    growth = (rss["rss_at_end_mib"] - rss["rss_at_10k_mib"]) / rss["rss_at_10k_mib"] * 100
    return {
        "queued": n,
        "redis_bytes_per_call": round((redis_after - redis_before) / n, 1),
        "api_rss_mib": {"before": round(api_rss_before, 1), "after": round(api_rss_after, 1)},
        "worker_rss_at_10k_mib": rss["rss_at_10k_mib"],
        "worker_rss_at_end_mib": rss["rss_at_end_mib"],
        "worker_rss_growth_pct": round(growth, 1),
        "drain_calls_per_s": round(n / (ended - started), 1),
    }
