"""(h) The console's Function Calls log with 100,000 calls: its first page, by filter.

    python -m bench.console_log [--quick] [--db postgres|sqlite|both] [--runs 30]

The issue asks: "The log's first page renders in under 100 ms with 100,000 calls in the
database." One tenant's 100,000 calls (and another tenant's 100,000, as noise) are written
over a day: ten apps (a few busy, most quiet), 2,000 end users (a few busy, most quiet),
statuses and network codes in the proportions a healthy service shows, 30% of the calls in
batches of 500. Then `GET /console` (the real ASGI app, its lifespan run, a signed-in
session cookie) is timed unfiltered and under each filter, with its baseline in the same
run: `GET /function-calls` (the JSON API, same filter, 50 calls) and `list_calls` alone
(the SQL and the rows, no HTTP). p50 and p95 over `--runs` runs each.

Each filter's query, as `list_calls` builds it, is planned: EXPLAIN on Postgres (a database
of its own on BENCH_DATABASE_URL's server, dropped after; ANALYZEd after the writes, as
autovacuum would be), EXPLAIN QUERY PLAN on SQLite (a temporary file). The schema is first
migrated to BEFORE (the indexes the log had until then) and measured, then to the head
(the log's indexes, migration 0009) and measured again. After each stage, 20,000 more calls
are written and timed: what the indexes cost the writes. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.call_log import LogFilter, list_calls
from api.dev.embedded_redis import start_embedded_redis
from api.dev.harness import new_database
from bench.console_seed import CALLS, QUICK_CALLS, Seeded, seed, write_cost
from bench.stack import PG_URL
from models.broker import NoPublisher
from models.calls.states import CallStatus
from models.crypto.secrets import generate_encryption_key
from models.db.engine import create_db_engine
from models.db.migrate import alembic_config
from models.db.tables import Tenant
from models.settings import Settings
from tests.plans import Plan, plan_of

BEFORE = "0008"  # the last revision without the log's indexes
RUNS = 30
WRITE_COST_CALLS = 20_000  # written after each stage: what its indexes cost the writes
QUICK_RUNS = 10


def migrate(engine: Engine, revision: str) -> None:
    cfg = alembic_config(str(engine.url))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def _pcts(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 1), "p95_ms": round(p95, 1)}


def _timed(runs: int, once: Callable[[], object]) -> dict[str, float]:
    once()  # warm: the first run pays for caches and imports
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        once()
        samples.append((time.perf_counter() - start) * 1000)
    return _pcts(samples)


def _log_filter(values: dict[str, str]) -> LogFilter:
    """The filter the console and the API build from these query values."""
    return LogFilter(
        app=values.get("app"),
        status=CallStatus(values["status"]) if "status" in values else None,
        user_id=values.get("user_id"),
        batch_id=values.get("batch_id"),
        network_code=values.get("network_code"),
        since=datetime.fromisoformat(values["since"]) if "since" in values else None,
        until=datetime.fromisoformat(values["until"]) if "until" in values else None,
    )


def _signed_in(client: TestClient, api_key: str) -> None:
    """Sign `client` in through the console's form, as a browser does."""
    form = client.get("/console/sign-in").text
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/console/sign-in", data={"api_key": api_key, "csrf_token": token})
    assert answer.status_code in (200, 303), answer.status_code


def _get(
    client: TestClient, path: str, values: dict[str, str], **headers: str
) -> Callable[[], None]:
    def get() -> None:
        answer = client.get(path, params=values, headers=headers)
        assert answer.status_code == 200, (path, answer.status_code)

    return get


def _one_filter(
    engine: Engine, client: TestClient, seeded: Seeded, values: dict[str, str], runs: int
) -> dict[str, Any]:
    tenant = Tenant(id=seeded.tenant_id, name="bench", api_key_hash="-", api_key_prefix="-")
    filters = _log_filter(values)

    def sql() -> object:
        return list_calls(engine, tenant, filters, None, 50)

    plan = plan_of(engine, sql, "function_call")
    bearer = f"Bearer {seeded.api_key}"
    return {
        "rows": len(list_calls(engine, tenant, filters, None, 50)[0]),
        "console": _timed(runs, _get(client, "/console", values)),
        "api": _timed(runs, _get(client, "/function-calls", values, Authorization=bearer)),
        "list_calls": _timed(runs, sql),
        "plan": asdict(plan),
    }


def measure(engine: Engine, client: TestClient, seeded: Seeded, runs: int) -> dict[str, Any]:
    """Per filter: the console's first page, the API's, list_calls alone, and the plan."""
    out: dict[str, Any] = {}
    for name, values in seeded.filters.items():
        out[name] = one = _one_filter(engine, client, seeded, values, runs)
        say(
            f"  {name:<13} console {_ms(one['console'])} api {_ms(one['api'])} sql "
            f"{_ms(one['list_calls'])}  {_plan_line(Plan(**one['plan']))}"
        )
    return out


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _plan_line(plan: Plan) -> str:
    flags = ("SCANS THE TABLE " if plan.scans_table else "") + ("SORTS " if plan.sorts else "")
    return flags + " | ".join(plan.lines)


@contextmanager
def _database(db: str) -> Iterator[Engine]:
    with tempfile.TemporaryDirectory() as tmp:
        server = PG_URL if db == "postgres" else None
        with new_database(Path(tmp), server, prefix="passthru_bench_log") as url:
            engine = create_db_engine(url)
            try:
                yield engine
            finally:
                engine.dispose()


def _analyze(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE function_call"))


def app_settings(engine: Engine, redis_url: str) -> Settings:
    """Settings for the app in process, on `engine`'s database: no catalog file, no
    upstream overrides, no metrics port."""
    return Settings(
        _env_file=None,
        database_url=engine.url.render_as_string(hide_password=False),
        encryption_keys=generate_encryption_key(),
        redis_url=redis_url,
        apps_file=None,
        upstream_overrides={},
        metrics_port=0,
    )


def one_database(db: str, calls: int, runs: int) -> dict[str, Any]:
    """Seed at BEFORE, measure; migrate to the head, measure again."""
    redis = start_embedded_redis()
    try:
        with _database(db) as engine:
            migrate(engine, BEFORE)
            say(f"(h) {db}: writing {calls:,} calls for each of two tenants")
            seeded = seed(engine, calls)
            _analyze(engine)
            settings = app_settings(engine, redis.url)
            result: dict[str, Any] = {"calls_per_tenant": calls}
            with TestClient(create_app(settings, publisher=NoPublisher())) as client:
                _signed_in(client, seeded.api_key)
                for stage, revision in (("before", BEFORE), ("after", "head")):
                    migrate(engine, revision)
                    _analyze(engine)
                    say(f"(h) {db}, {stage} (revision {revision}): console p50/p95, plan")
                    result[stage] = measure(engine, client, seeded, runs)
                    seconds = write_cost(engine, WRITE_COST_CALLS)
                    result[stage]["writes_per_s"] = round(WRITE_COST_CALLS / seconds)
                    say(f"  writing {WRITE_COST_CALLS:,} more calls: {seconds:.2f} s")
            return result
    finally:
        redis.stop()


def console_log(db: str, quick: bool, runs: int | None = None) -> dict[str, Any]:
    """`db`: "postgres", "sqlite" or "both"."""
    calls = QUICK_CALLS if quick else CALLS
    runs = runs or (QUICK_RUNS if quick else RUNS)
    dbs = ("postgres", "sqlite") if db == "both" else (db,)
    return {name: one_database(name, calls, runs) for name in dbs}


def table(results: dict[str, Any]) -> str:
    """p50/p95 in ms of the console's first page, before and after, with its baselines (the
    API's page, and list_calls alone)."""
    lines = [
        f"{'console log':<16}{'filter':<14}{'before':>11}{'after':>11}"
        f"{'API after':>11}{'SQL before':>12}{'SQL after':>11}  plan after"
    ]
    for db, r in results.items():
        lines.append(
            f"{db:<16}{'(writes/s)':<14}{r['before']['writes_per_s']:>11}"
            f"{r['after']['writes_per_s']:>11}"
        )
        for name, after in r["after"].items():
            if name == "writes_per_s":
                continue
            before = r["before"][name]
            plan = after["plan"]
            flags = ("scan " if plan["scans_table"] else "") + ("sort" if plan["sorts"] else "")
            lines.append(
                f"{db:<16}{name:<14}{_ms(before['console']):>11}{_ms(after['console']):>11}"
                f"{_ms(after['api']):>11}{_ms(before['list_calls']):>12}"
                f"{_ms(after['list_calls']):>11}  {flags or 'index'}"
            )
    return "\n".join(lines)


def _ms(p: dict[str, float]) -> str:
    return f"{p['p50_ms']:.0f}/{p['p95_ms']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--db", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    from bench.__main__ import run_header, write_results

    results = console_log(args.db, args.quick, args.runs)
    print(table(results))
    write_results("console-log", {**run_header(), "console_log": results})


if __name__ == "__main__":
    main()
