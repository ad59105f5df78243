"""(i) The log at scale: a million calls in one database, and what the log does with them.

    python -m bench.log_scale [--quick] [--db postgres|sqlite] [--calls N] [--runs 20]

Two tenants' calls (half each, a day of them, `bench/console_seed.py`'s shapes) are written
in bulk, 5,000 rows per INSERT: the insert throughput, on Postgres into the tables
partitioned by day (migration 0013, the days' partitions made first, as the sweeper makes
them ahead) and, in the same run, into a database of its own left at 0012 (one table each,
as before). Then, on the first tenant's calls:
the first page (`list_calls`, 50 calls) under each of the console bench's filters, p50 and
p95; the export in lines per second, through `GET /function-calls/export` (the app in
process, no socket) and `export_calls` alone, each against the export as it was before
(pages of 500 calls read as ORM objects and shown through `call_out`, one line per yield)
in the same run, and its Python memory peak (tracemalloc) after 20,000 and after 100,000
lines: flat if equal; the bytes per call (`pg_total_relation_size` on Postgres, pages in
use on SQLite); and the time retention (`worker/retention.py`) takes to purge the day of
calls, run after run: on Postgres, dropping the partitions the day's calls are in (the
calls not yet final are ended first, as their deadlines would end them).
A database of its own (dropped after). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import islice
from typing import Any

import orjson
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text, update

from api.app import create_app
from api.call_export import export_calls
from api.call_log import LogFilter, list_calls
from api.dev.embedded_redis import start_embedded_redis
from api.routes import calls as calls_routes
from bench.console_log import _analyze, _database, _log_filter, _timed, app_settings, say
from bench.console_seed import Seeded, seed
from models.broker import NoPublisher
from models.calls.resources import call_out
from models.db.ids import first_id_at
from models.db.migrate import alembic_config, upgrade
from models.db.partitions import ensure, partitioned, partitions
from models.db.tables import UNFINISHED_SQL, FunctionCall, Tenant
from worker.retention import purge

CALLS = 1_000_000
QUICK_CALLS = 100_000
RUNS = 20
_calls = FunctionCall.__table__  # type: ignore[attr-defined]


def previous_export(engine: Engine, tenant: Tenant, filters: LogFilter) -> Iterator[bytes]:
    """The export as it was: pages of 500 ORM rows, each through call_out, a yield a line."""
    cursor: str | None = None
    while True:
        rows, cursor = list_calls(engine, tenant, filters, cursor, 500)
        for call in rows:
            yield orjson.dumps(call_out(call).model_dump(mode="json")) + b"\n"
        if cursor is None:
            return


def _rate(export: Any, engine: Engine, tenant: Tenant, limit: int | None) -> dict[str, Any]:
    lines = 0
    started = time.perf_counter()
    for chunk in islice(export(engine, tenant, LogFilter()), limit):
        lines += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    return {"lines": lines, "s": round(seconds, 2), "lines_per_s": round(lines / seconds)}


def _peak_kib(engine: Engine, tenant: Tenant, lines: int) -> int:
    tracemalloc.start()
    try:
        seen = 0
        for chunk in export_calls(engine, tenant, LogFilter()):
            seen += chunk.count(b"\n")
            if seen >= lines:
                break
        return tracemalloc.get_traced_memory()[1] // 1024
    finally:
        tracemalloc.stop()


def http_rates(engine: Engine, api_key: str, before_lines: int) -> dict[str, Any]:
    """`GET /function-calls/export` through the app (its route, its key check, its streamed
    response; in process, no socket): read to the end, then with the route serving the
    export as it was, for `before_lines` lines."""
    redis = start_embedded_redis()
    try:
        settings = app_settings(engine, redis.url)
        with TestClient(create_app(settings, publisher=NoPublisher())) as client:
            headers = {"Authorization": f"Bearer {api_key}"}
            now = _http_rate(client, headers, None)
            with _route_serving(previous_export):
                before = _http_rate(client, headers, before_lines)
    finally:
        redis.stop()
    return {"http_now": now, "http_before": before}


@contextmanager
def _route_serving(export: Any) -> Iterator[None]:
    kept = getattr(calls_routes, "export_calls")  # noqa: B009  (a module global, swapped)
    setattr(calls_routes, "export_calls", export)  # noqa: B010
    try:
        yield
    finally:
        setattr(calls_routes, "export_calls", kept)  # noqa: B010


def _http_rate(client: TestClient, headers: dict[str, str], limit: int | None) -> dict[str, Any]:
    lines = 0
    started = time.perf_counter()
    with client.stream("GET", "/function-calls/export", headers=headers) as answer:
        for chunk in answer.iter_bytes():
            lines += chunk.count(b"\n")
            if limit is not None and lines >= limit:
                break
    seconds = time.perf_counter() - started
    return {"lines": lines, "s": round(seconds, 2), "lines_per_s": round(lines / seconds)}


def export_figures(engine: Engine, seeded: Seeded, quick: bool) -> dict[str, Any]:
    """The export's rate through HTTP, alone, and as it was (on at most 50,000 lines: it is
    slow), and its memory peak after 20,000 and 100,000 lines."""
    tenant = _tenant(seeded)
    before_lines = 20_000 if quick else 50_000
    out = {
        **http_rates(engine, seeded.api_key, before_lines),
        "now": _rate(export_calls, engine, tenant, None),
        "before": _rate(previous_export, engine, tenant, before_lines),
        "peak_kib_20k_lines": _peak_kib(engine, tenant, 20_000),
        "peak_kib_100k_lines": _peak_kib(engine, tenant, 100_000),
    }
    say(f"  export: {out}")
    return out


def bytes_per_call(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(_calls)).scalar_one()
        if engine.dialect.name == "postgresql":
            total = int(
                conn.execute(
                    text(
                        "SELECT sum(pg_total_relation_size(p.relid))"
                        " FROM unnest(ARRAY['function_call', 'call_attempt']::regclass[]) AS t,"
                        " LATERAL pg_partition_tree(t) AS p"
                    )
                ).scalar_one()
            )
        else:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            total = (pages - free) * size  # the whole file: calls, their indexes, the rest
    return {"rows": rows, "bytes": total, "bytes_per_call": round(total / max(rows, 1))}


def purge_a_day(engine: Engine) -> dict[str, Any]:
    """Retention as it runs, run after run, until the day's finished calls are gone (on
    Postgres: its partitions, once every call in them is final)."""
    now = datetime.now(UTC) + timedelta(days=2)
    out: dict[str, Any] = {}
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            days = partitions(conn, "function_call")
            ended = conn.execute(
                update(_calls).where(text(UNFINISHED_SQL)).values(status="failed")
            ).rowcount
        out["ended_first"] = ended
        bound = first_id_at("fc", now - timedelta(days=1))
        out["partitions"] = [p.name for p in days if p.upper and p.upper <= bound]
    runs, deleted = 0, 0
    started = time.perf_counter()
    while went := purge(engine, now, 1.0):
        runs, deleted = runs + 1, deleted + went
    seconds = time.perf_counter() - started
    out |= {"deleted": deleted, "runs": runs, "s": round(seconds, 3)}
    with engine.connect() as conn:
        out["left"] = conn.execute(select(func.count()).select_from(_calls)).scalar_one()
    say(f"  purge: {out}")
    return out


def insert_rate(engine: Engine, calls: int) -> dict[str, Any]:
    """Seconds to write the two tenants' `calls` (5,000 per INSERT); on Postgres, the days'
    partitions are made first, as the sweeper makes them ahead."""
    today = datetime.now(UTC).date()
    with engine.begin() as conn:
        if partitioned(conn):
            ensure(conn, today - timedelta(days=2), today)
    started = time.perf_counter()
    seeded = seed(engine, calls // 2)
    seconds = time.perf_counter() - started
    return {"seeded": seeded, "s": round(seconds, 1), "calls_per_s": round(calls / seconds)}


def insert_unpartitioned(db: str, calls: int) -> dict[str, Any] | None:
    """The same writes into a database of their own left at 0012 (no partitions)."""
    if db != "postgres":
        return None
    with _database(db) as engine:
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "0012")
        out = insert_rate(engine, calls)
    out.pop("seeded")
    say(f"  insert at 0012, unpartitioned: {out}")
    return out


def first_pages(engine: Engine, tenant: Tenant, filters: dict[str, Any], runs: int) -> Any:
    out = {}
    for name, values in filters.items():
        out[name] = _timed(runs, partial(list_calls, engine, tenant, _log_filter(values), None, 50))
        say(f"  {name:<13} {out[name]}")
    return out


def _tenant(seeded: Seeded) -> Tenant:
    return Tenant(id=seeded.tenant_id, name="bench", api_key_hash="-", api_key_prefix="-")


def log_scale(db: str, calls: int, runs: int, quick: bool = False) -> dict[str, Any]:
    say(f"(i) {db}: writing {calls:,} calls")
    before = insert_unpartitioned(db, calls)
    with _database(db) as engine:
        upgrade(engine)
        insert = insert_rate(engine, calls)
        seeded = insert.pop("seeded")
        _analyze(engine)
        tenant = _tenant(seeded)
        report: dict[str, Any] = {
            "calls": calls,
            "insert": insert,
            "insert_unpartitioned": before,
            "bytes": bytes_per_call(engine),
        }
        say(f"  {report}")
        report["first_page"] = first_pages(engine, tenant, seeded.filters, runs)
        report["export"] = export_figures(engine, seeded, quick)
        report["purge_a_day"] = purge_a_day(engine)
        return report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.log_scale")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--calls", type=int, default=None)
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    calls = args.calls or (QUICK_CALLS if args.quick else CALLS)
    print(json.dumps(log_scale(args.db, calls, args.runs, args.quick), indent=2))


if __name__ == "__main__":
    main()
