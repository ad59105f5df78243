"""`make bench`: passthru against its baselines, on this machine, in one run.

    python -m bench [--quick] [--only a,b,c,d,e,f,g,h,i,j,k,l] [--db postgres|sqlite] [--workers N]

(a) bulk, (b) latency-bound, (c) interactive at 20 and 200 calls/s, (d) backlog,
(e) interactive during a bulk drain ((c) and (e) against the design's floor too,
bench/floor.py), (f) memory under hostile input, (g) the sweeper's cost
per run against the backlog, (h) the console log's first page with 100,000 calls, by filter
(both on Postgres and SQLite, unless --db sqlite), (i) the log at scale: a million calls,
each filter's first page, the export rate, bytes per call, purging a day, insert rate,
(j) a tenant's requests beside a flood of made-up API keys, and what the flood costs,
(k) a tenant's batch alone, and beside another tenant's backlog on another bulk shard and
on its own, (l) a webhook burst: how fast a tenant's events of a 20,000-call batch reach its
endpoint, against a bare client posting as many to the same receiver.

Prints a table (scenario, passthru, baselines, ratios) and writes it as JSON to
bench/results/. A benchmark, not a test: it asserts nothing and never runs in `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import console_log as bench_console_log
from bench import during_bulk as bench_during_bulk
from bench import fairness as bench_fairness
from bench import hostile as bench_hostile
from bench import interactive as bench_interactive
from bench import key_flood as bench_key_flood
from bench import log_scale as bench_log_scale
from bench import scenarios as sc
from bench import sweep_cost as bench_sweep_cost
from bench import webhook_burst as bench_webhook_burst
from bench.stack import PG_URL, stack

RESULTS = Path(__file__).parent / "results"


def run_header() -> dict[str, Any]:
    """When and where a benchmark ran: the first keys of every results file."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }


def write_results(prefix: str, report: dict[str, Any]) -> Path:
    """Keep a run's figures as bench/results/<prefix>-<UTC time>.json."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"written to {out}", file=sys.stderr)
    return out


def _workers(s: Any, count: int) -> None:
    for i in range(count):
        s.start_worker(f"worker{i}")


def bulk(args: argparse.Namespace) -> dict[str, Any]:
    n = 2_000 if args.quick else 20_000
    with stack(args.db) as s:
        key = sc.prepare(s)
        _workers(s, args.workers)
        sc.say(f"(a) passthru: {n} calls through the batch API, instant upstream")
        passthru = sc.passthru_throughput(s, key, n)
        url = f"{s.upstream_url}/items"
        sc.say("(a) baselines")
        base = {
            "direct_sync_httpx": sc.direct_sync(url, min(n, 5_000)),
            "direct_concurrent": sc.direct_concurrent(url, n, 100),
            "naive_celery": sc.naive_celery(s, url, n),
        }
    return {"passthru": passthru, **base}


def latency_bound(args: argparse.Namespace) -> dict[str, Any]:
    n = 2_000 if args.quick else 10_000
    with stack(args.db, upstream_delay_ms=200) as s:
        key = sc.prepare(s)
        _workers(s, args.workers)
        sc.say(f"(b) passthru: {n} calls, upstream answering after 200 ms")
        passthru = sc.passthru_throughput(s, key, n)
        url = f"{s.upstream_url}/items"
        sc.say("(b) baselines (sync loop and naive Celery on a sample: they run at ~5-10/s)")
        base = {
            "direct_sync_httpx": sc.direct_sync(url, 25),
            "direct_concurrent": sc.direct_concurrent(url, n, 500),
            "naive_celery": sc.naive_celery(s, url, 100),
        }
    return {"passthru": passthru, **base}


def interactive(args: argparse.Namespace) -> dict[str, Any]:
    duration = 10.0 if args.quick else 30.0
    with stack(args.db) as s:
        key = sc.prepare(s)
        _workers(s, args.workers)
        return bench_interactive.interactive(s, key, rates=[20, 200], duration_s=duration)


def backlog(args: argparse.Namespace) -> dict[str, Any]:
    n = 20_000 if args.quick else 200_000
    with stack(args.db) as s:
        key = sc.prepare(s)
        return sc.backlog(s, key, n, s.procs["api"].pid)


def interactive_during_bulk(args: argparse.Namespace) -> dict[str, Any]:
    n = 2_000 if args.quick else 20_000
    baseline_s = 10.0 if args.quick else 30.0
    with stack(args.db) as s:
        key = sc.prepare(s)
        _workers(s, args.workers)
        return bench_during_bulk.during_bulk(s, key, n, baseline_s)


def hostile_input(args: argparse.Namespace) -> dict[str, Any]:
    return bench_hostile.hostile(args.db)


def sweep_cost(args: argparse.Namespace) -> dict[str, Any]:
    return bench_sweep_cost.sweep_cost("both" if args.db == "postgres" else "sqlite", args.quick)


def console_log(args: argparse.Namespace) -> dict[str, Any]:
    both = "both" if args.db == "postgres" else "sqlite"
    return bench_console_log.console_log(both, args.quick)


def log_scale(args: argparse.Namespace) -> dict[str, Any]:
    calls = bench_log_scale.QUICK_CALLS if args.quick else bench_log_scale.CALLS
    return bench_log_scale.log_scale(args.db, calls, bench_log_scale.RUNS, args.quick)


def key_flood(args: argparse.Namespace) -> dict[str, Any]:
    return bench_key_flood.key_flood(args.db, args.quick)


def fairness(args: argparse.Namespace) -> dict[str, Any]:
    n = 2_000 if args.quick else 10_000
    with stack(args.db) as s:
        sc.prepare(s)
        _workers(s, args.workers)
        return bench_fairness.fairness(s, n)


def webhook_burst(args: argparse.Namespace) -> dict[str, Any]:
    n = 2_000 if args.quick else 20_000
    return bench_webhook_burst.webhook_burst(args.db, args.workers, n)


SCENARIOS = {
    "a": ("bulk", bulk),
    "b": ("latency_bound", latency_bound),
    "c": ("interactive", interactive),
    "d": ("backlog", backlog),
    "e": ("interactive_during_bulk", interactive_during_bulk),
    "f": ("hostile", hostile_input),
    "g": ("sweep_cost", sweep_cost),
    "h": ("console_log", console_log),
    "i": ("log_scale", log_scale),
    "j": ("key_flood", key_flood),
    "k": ("fairness", fairness),
    "l": ("webhook_burst", webhook_burst),
}


def _median(values: list[Any]) -> Any:
    """The median of each number across runs, keeping the shape of one run."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _median([v[k] for v in values]) for k in first}
    if isinstance(first, int | float) and not isinstance(first, bool):
        return statistics.median(values)
    return first


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "-"


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'scenario':<16}{'passthru':>16}{'sync loop':>14}{'concurrent':>14}"
        f"{'naive Celery':>14}{'vs naive':>10}"
    ]
    for name in ("bulk", "latency_bound"):
        r = results.get(name)
        if not r:
            continue
        p = r["passthru"]["calls_per_s"]
        lines.append(
            f"{name:<16}{p:>12.0f}/s  {r['direct_sync_httpx']['calls_per_s']:>10.0f}/s  "
            f"{r['direct_concurrent']['calls_per_s']:>10.0f}/s  "
            f"{r['naive_celery']['calls_per_s']:>10.1f}/s  "
            f"{_ratio(p, r['naive_celery']['calls_per_s']):>8}"
        )
    if r := results.get("interactive"):
        lines.append(bench_interactive.table(r))
    if r := results.get("backlog"):
        lines.append(
            f"{'backlog':<16}{r['redis_bytes_per_call']:.0f} B of Redis per queued call; "
            f"API RSS {r['api_rss_mib']['after']:.0f} MiB; worker RSS "
            f"{r['worker_rss_at_10k_mib']:.0f} -> {r['worker_rss_at_end_mib']:.0f} MiB "
            f"({r['worker_rss_growth_pct']:+.1f}%); drain {r['drain_calls_per_s']:.0f}/s"
        )
    if r := results.get("interactive_during_bulk"):
        lines.append(bench_during_bulk.table(r))
    if r := results.get("hostile"):
        lines.append(bench_hostile.table(r))
    if r := results.get("sweep_cost"):
        lines.append(bench_sweep_cost.table(r))
    if r := results.get("console_log"):
        lines.append(bench_console_log.table(r))
    if r := results.get("key_flood"):
        lines.append(bench_key_flood.table(r))
    if r := results.get("fairness"):
        lines.append(bench_fairness.table(r))
    if r := results.get("webhook_burst"):
        lines.append(bench_webhook_burst.table(r))
    return "\n".join(lines)


def _postgres_answers() -> bool:
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument(
        "--only", default="a,b,c,d,e,f,g,h,i,j,k,l", help="scenarios to run, e.g. a,c"
    )
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--workers", type=int, default=2, help="passthru worker processes")
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="runs per scenario; the table shows the median of each figure",
    )
    args = parser.parse_args()
    if args.db == "postgres" and not _postgres_answers():
        print(f"no Postgres at {PG_URL} (set BENCH_DATABASE_URL); using SQLite", file=sys.stderr)
        args.db = "sqlite"
    results: dict[str, Any] = {}
    runs: dict[str, list[Any]] = {}
    for letter in args.only.split(","):
        name, run = SCENARIOS[letter.strip()]
        for i in range(args.runs):
            print(f"({letter}) {name}, run {i + 1} of {args.runs}", file=sys.stderr, flush=True)
            started = time.monotonic()
            runs.setdefault(name, []).append(run(args))
            print(f"    done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        results[name] = _median(runs[name])
    report = {
        **run_header(),
        "db": args.db,
        "workers": args.workers,
        "quick": args.quick,
        "runs": args.runs,
        "results": results,
        "all_runs": runs,
    }
    print(table(results))
    write_results("bench", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
