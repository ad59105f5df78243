"""(j) A flood of made-up API keys: what each costs, and a tenant's requests beside it.

    python -m bench.key_flood [--quick] [--db postgres|sqlite]

One tenant sends `GET /function-calls?limit=1` one after another: first alone (the
baseline); then beside FLOOD_PROCESSES processes of CONCURRENCY clients each, sending the
same request as fast as they can, each with a new random key (a key nobody was given, as a
scanner would); then beside the same flood while the database holds every key lookup for
STALL_S (the tenant table locked, as a slow disk, a vacuum or a migration would). Reported:
the tenant's p50, p99 and worst request in each phase, the flood's answers per second by
status, and the CPU the API process and Postgres spent per made-up key. One API process
(uvicorn, one event loop), on Postgres unless the run is on SQLite (no stall phase there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import text

from bench import scenarios as sc
from bench.stack import Stack, cpu_s, postgres_cpu_s, stack

FLOOD_PROCESSES = 2
CONCURRENCY = 64
FLOOD_S = 5.0
STALL_S = 3.0
TENANT_REQUESTS = 400
QUICK_TENANT_REQUESTS = 150
TENANT_TTL_S = 10.0  # api/tenant_cache.py's TTL_S (this module runs against older code too)


def _tenant(api_url: str, key: str, count: int) -> list[float]:
    """Milliseconds of each of `count` requests, one after another."""
    took = []
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(count):
            started = time.perf_counter()
            client.get("/function-calls", params={"limit": "1"}).raise_for_status()
            took.append((time.perf_counter() - started) * 1000)
    return took


def _tenant_for(api_url: str, key: str, seconds: float) -> list[float]:
    """`_tenant`'s figures, for as many requests as fit in `seconds`."""
    took: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        took.extend(_tenant(api_url, key, 10))
    return took


async def _flood(api_url: str, seconds: float) -> Counter[str]:
    """CONCURRENCY clients sending made-up keys for `seconds`: their answers by status."""
    statuses: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=api_url, limits=limits, timeout=30) as client:

        async def one() -> None:
            while time.monotonic() < deadline:
                key = "pt_" + secrets.token_urlsafe(32)
                try:
                    r = await client.get(
                        "/function-calls",
                        params={"limit": "1"},
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    statuses[str(r.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1

        await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
    return statuses


class Flood:
    """FLOOD_PROCESSES processes running `_flood` (this module, `--flood`)."""

    def __init__(self, api_url: str, seconds: float) -> None:
        argv = [sys.executable, "-m", "bench.key_flood", "--flood", api_url, str(seconds)]
        self.procs = [
            subprocess.Popen(argv, stdout=subprocess.PIPE) for _ in range(FLOOD_PROCESSES)
        ]

    def answers(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for proc in self.procs:
            out, _ = proc.communicate(timeout=120)
            total.update(json.loads(out))
        return total


def _summary(took: list[float]) -> dict[str, Any]:
    """The tenant's requests: how many, and their p50, p99 and max in ms."""
    return {"requests": len(took), **sc.percentiles(took)}


def _per_s(answers: Counter[str], seconds: float) -> dict[str, int]:
    return {status: round(n / seconds) for status, n in sorted(answers.items())}


def _flood_alone(s: Stack, api_pid: int) -> dict[str, Any]:
    api_cpu, pg_cpu = cpu_s(api_pid), postgres_cpu_s()
    answers = Flood(s.api_url, FLOOD_S).answers()
    made_up = sum(answers.values()) or 1
    return {
        "answers_per_s": _per_s(answers, FLOOD_S),
        "api_cpu_ms_per_key": round((cpu_s(api_pid) - api_cpu) * 1000 / made_up, 3),
        "postgres_cpu_ms_per_key": round((postgres_cpu_s() - pg_cpu) * 1000 / made_up, 3),
    }


def _beside(s: Stack, key: str, stall: bool) -> dict[str, Any]:
    if stall:
        # The tenant's key looked up afresh, so its entry outlives the stall (10 s): what is
        # measured is the made-up keys' effect, not the tenant's own lookup held.
        time.sleep(TENANT_TTL_S + 0.5)
        _tenant(s.api_url, key, 1)
    flood = Flood(s.api_url, FLOOD_S)
    time.sleep(1.0)  # the flood at full speed before the tenant is measured
    held = threading.Thread(target=_hold_key_lookups, args=(s,)) if stall else None
    if held:
        held.start()
    took = _tenant_for(s.api_url, key, STALL_S if stall else FLOOD_S - 2.0)
    if held:
        held.join()
    return {"tenant": _summary(took), "flood_answers_per_s": _per_s(flood.answers(), FLOOD_S)}


def _hold_key_lookups(s: Stack) -> None:
    """Every key lookup waits STALL_S: the tenant table locked in a transaction."""
    with s.engine.connect() as conn:
        conn.execute(text("LOCK TABLE tenant IN ACCESS EXCLUSIVE MODE"))
        time.sleep(STALL_S)
        conn.rollback()


def key_flood(db: str = "postgres", quick: bool = False) -> dict[str, Any]:
    count = QUICK_TENANT_REQUESTS if quick else TENANT_REQUESTS
    with stack(db) as s:
        key = sc.prepare(s, accounts=())
        api_pid = s.procs["api"].pid
        _tenant(s.api_url, key, 50)  # warm
        sc.say(f"(j) the tenant alone: {count} requests")
        alone = _summary(_tenant(s.api_url, key, count))
        flood_processes = f"{FLOOD_PROCESSES}x{CONCURRENCY}"
        sc.say(f"(j) a flood of made-up keys alone ({flood_processes} clients, {FLOOD_S:g} s)")
        flood = _flood_alone(s, api_pid)
        sc.say("(j) the tenant beside the flood")
        beside = _beside(s, key, stall=False)
        stalled = None
        if db == "postgres":
            sc.say(f"(j) the tenant beside the flood, key lookups held {STALL_S:g} s")
            stalled = _beside(s, key, stall=True)
        return {
            "flood_clients": flood_processes,
            "tenant_alone": alone,
            "flood_alone": flood,
            "beside_flood": beside,
            "beside_flood_lookups_held": stalled,
        }


def table(r: dict[str, Any]) -> str:
    def tenant(t: dict[str, Any]) -> str:
        return f"{t['p50']}/{t['p99']}/{t['max']} ms"

    def answers(a: dict[str, int]) -> str:
        return ", ".join(f"{n}/s {status}" for status, n in a.items())

    flood = r["flood_alone"]
    lines = [
        f"{'key flood':<16}tenant p50/p99/max {tenant(r['tenant_alone'])} alone; "
        f"{r['flood_clients']} clients of made-up keys: {answers(flood['answers_per_s'])}, "
        f"CPU per key: API {flood['api_cpu_ms_per_key']} ms, Postgres "
        f"{flood['postgres_cpu_ms_per_key']} ms",
        f"{'':<16}beside it {tenant(r['beside_flood']['tenant'])}",
    ]
    if held := r.get("beside_flood_lookups_held"):
        lines.append(
            f"{'':<16}beside it, lookups held {STALL_S:g} s: {tenant(held['tenant'])} "
            f"(flood: {answers(held['flood_answers_per_s'])})"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.key_flood", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--flood", nargs=2, metavar=("API_URL", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        print(json.dumps(asyncio.run(_flood(args.flood[0], float(args.flood[1])))))
        return 0
    result = key_flood(args.db, args.quick)
    print(table(result))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
