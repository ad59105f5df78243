"""(g) The sweeper's cost per run against the size of the backlog.

    python -m bench.sweep_cost [--quick] [--db postgres|sqlite|both] [--sizes 1000,10000,200000]

`worker/sweeper.py: sweep(rt)` runs every PASSTHRU_SWEEP_EVERY_S (4 s by default) whatever
is queued. This measures one run of it against a database holding a backlog of N queued
calls, for N = 1,000 (the baseline), 10,000 and 200,000, on Postgres (a database of its own
on BENCH_DATABASE_URL's server, dropped after) and on SQLite (a temporary file).

The rows are a backlog as the batch API leaves it, and what surrounds one:

- N `queued` calls, published when written (`published_at` = `created_at`, within the last
  4 minutes, `next_attempt_at` NULL): healthy, in Redis, and the sweeper must leave them be;
- N finished calls (`completed`, a few `failed`), older, with a delivered webhook event for
  every fourth: the history;
- a fixed set the sweeper does act on, the same at every N: queued calls whose publish
  failed, `retrying` calls due (and some due whose countdown message is in flight), `running`
  calls whose lease expired (GET: taken back; POST with a callback: ended, with a webhook
  event), and webhook deliveries due or lost; and a fixed set it must not act on: retries
  and rate-limit waits due later, calls still within the publish grace, running calls with
  a live lease.

Before each run the rows the previous run changed are put back as they were (untimed), so
every run does the same work: what a sweep costs when there is a little to do and a big
backlog to find it in. The sweep runs with the Runtime the worker tests build
(tests/worker/factories.py), a clock standing still and a publisher that only records.
Each run is timed whole; each statement it issues is also timed (on SQLite that misses the
rows a SELECT reads after its first, which are read while fetching) and, after the runs,
planned: EXPLAIN (ANALYZE, BUFFERS) on Postgres, inside a transaction rolled back, and
EXPLAIN QUERY PLAN plus one timed execution on SQLite. "examined" is, on Postgres, the rows
the plan's scans produced or removed by a filter: a query whose examined rows grow with N
scans the backlog.

Postgres is ANALYZEd after each insert (as autovacuum would do soon after); SQLite is not
(passthru never runs ANALYZE there). Prints a table and, run alone, writes it as JSON to
bench/results/sweep-<timestamp>.json. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, bindparam, delete, event, text

from api.dev.harness import new_database
from bench.stack import PG_URL
from models.accounts.tenants import create_tenant
from models.calls.states import CallStatus
from models.catalog.apps import load_catalog
from models.crypto.secrets import Vault, generate_encryption_key
from models.db.engine import create_db_engine, session_scope
from models.db.ids import new_id
from models.db.migrate import upgrade
from models.db.tables import Batch, CallAttempt, ConnectedAccount, FunctionCall, WebhookDelivery
from models.webhooks.states import DeliveryStatus
from tests.worker.factories import RecordingPublisher, make_runtime
from worker.runtime import Runtime
from worker.sweeper import sweep

SIZES = (1_000, 10_000, 200_000)
QUICK_SIZES = (1_000, 10_000)
RUNS = 20
# Rows per INSERT batch while seeding.
CHUNK = 5_000

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
_deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
_attempts = CallAttempt.__table__  # type: ignore[attr-defined]
_batches = Batch.__table__  # type: ignore[attr-defined]

# Every column a seeded call sets (all rows of one INSERT need the same keys).
_CALL_COLUMNS = (
    "id",
    "tenant_id",
    "app",
    "function",
    "user_id",
    "connected_account_id",
    "batch_id",
    "method",
    "url",
    "request_body",
    "callback_url",
    "status",
    "error",
    "error_message",
    "output",
    "output_truncated",
    "duration_ms",
    "attempt_count",
    "lease_expires_at",
    "next_attempt_at",
    "published_at",
    "created_at",
    "started_at",
    "finished_at",
)
# What a sweep may change on a call or a delivery, put back before each run.
_CALL_MUTABLE = (
    "status",
    "error",
    "error_message",
    "lease_expires_at",
    "next_attempt_at",
    "published_at",
    "finished_at",
)
_DELIVERY_MUTABLE = ("status", "lease_expires_at", "published_at", "finished_at")


def say(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


# ---- the rows ---------------------------------------------------------------------------


@dataclass
class Seeded:
    """A database being filled: its tenant and account, the clock the sweeper runs at, the
    queued backlog so far, and the rows a sweep changes (their values as seeded)."""

    engine: Engine
    now: datetime
    tenant_id: str
    account_id: str
    queued: int = 0
    calls: int = 0
    deliveries: int = 0
    touched_calls: list[dict[str, Any]] = field(default_factory=list)
    touched_deliveries: list[dict[str, Any]] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))


def _call(s: Seeded, created_at: datetime, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(_CALL_COLUMNS)
    row.update(
        id=new_id("fc", now_ms=_ms(created_at)),
        tenant_id=s.tenant_id,
        app="slack",
        function="slack-passthrough-request",
        user_id="bench-user",
        connected_account_id=s.account_id,
        method="GET",
        url=f"https://slack.com/api/conversations.history?channel=C{s.rng.randrange(10**8):08d}",
        status=CallStatus.QUEUED,
        output_truncated=False,
        attempt_count=0,
        created_at=created_at,
    )
    row.update(fields)
    return row


def _insert(engine: Engine, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        for i in range(0, len(rows), CHUNK):
            conn.execute(table.insert(), list(rows[i : i + CHUNK]))


def start(engine: Engine, now: datetime) -> Seeded:
    """A tenant and its account, and the rows the sweeper acts on (or must not), the same
    whatever the backlog."""
    tenant, _ = create_tenant(engine, "sweep-bench")
    account_id = new_id("ca")
    with session_scope(engine) as session:
        session.add(
            ConnectedAccount(
                id=account_id,
                tenant_id=tenant.id,
                app="slack",
                user_id="bench-user",
                credentials_enc="not-read-by-the-sweeper",
            )
        )
    s = Seeded(engine, now, tenant.id, account_id)
    sec = timedelta(seconds=1)
    acted: list[dict[str, Any]] = []  # rows a run changes
    left: list[dict[str, Any]] = []  # rows it must leave
    for i in range(20):  # publish failed: republished
        acted.append(_call(s, now - 60 * sec - i * sec, published_at=None))
    for i in range(10):  # publish failed, within the grace: left
        left.append(_call(s, now - 3 * sec - i * 100 * sec / 1000, published_at=None))
    for i in range(50):  # handed back to wait for a rate-limit slot, due later
        at = now + (5 + i * 3) * sec
        made = now - 200 * sec
        left.append(_call(s, made, next_attempt_at=at, published_at=at if i < 18 else made))
    for i in range(300):  # retrying later: with a countdown message (soon), or not yet
        at = now + (1 + i * 3) * sec
        made = now - 900 * sec
        left.append(
            _call(
                s,
                made,
                status=CallStatus.RETRYING,
                attempt_count=1,
                next_attempt_at=at,
                published_at=at if i < 20 else made,
            )
        )
    for i in range(30):  # retrying, due, no message for this time: published
        at = now - (1 + i) * sec
        made = now - 600 * sec
        acted.append(
            _call(
                s,
                made,
                status=CallStatus.RETRYING,
                attempt_count=1,
                next_attempt_at=at,
                published_at=made,
            )
        )
    for i in range(20):  # retrying, due, its countdown message in flight: left
        at = now - (1 + i) * sec
        left.append(
            _call(
                s,
                now - 600 * sec,
                status=CallStatus.RETRYING,
                attempt_count=1,
                next_attempt_at=at,
                published_at=at,
            )
        )
    for i in range(50):  # running, lease live
        left.append(
            _call(
                s,
                now - 20 * sec,
                status=CallStatus.RUNNING,
                attempt_count=1,
                started_at=now - 2 * sec,
                lease_expires_at=now + (30 + i) * sec,
            )
        )
    for i in range(10):  # running, lease expired: GET taken back, POST ended (and its event)
        post = i % 2 == 1
        acted.append(
            _call(
                s,
                now - 300 * sec,
                status=CallStatus.RUNNING,
                attempt_count=1,
                method="POST" if post else "GET",
                callback_url="https://hooks.example.com/in" if post else None,
                started_at=now - 200 * sec,
                lease_expires_at=now - (60 + i) * sec,
            )
        )
    _insert(engine, _calls, acted + left)
    s.calls += len(acted) + len(left)
    s.touched_calls = acted

    deliveries: list[dict[str, Any]] = []
    for i in range(10):  # pending, due, publish lost
        deliveries.append(_delivery(s, DeliveryStatus.PENDING, next_attempt_at=now - i * sec))
    for i in range(5):  # delivering, lease expired: back to pending, or failed (last attempt)
        deliveries.append(
            _delivery(
                s,
                DeliveryStatus.DELIVERING,
                attempt_count=8 if i == 0 else 1,
                next_attempt_at=now - 100 * sec,
                published_at=now - 100 * sec,
                lease_expires_at=now - (10 + i) * sec,
            )
        )
    left_deliveries = [
        _delivery(s, DeliveryStatus.PENDING, next_attempt_at=now + (i + 1) * 60 * sec)
        for i in range(20)
    ]
    _insert(engine, _deliveries, deliveries + left_deliveries)
    s.deliveries += len(deliveries) + len(left_deliveries)
    s.touched_deliveries = deliveries
    return s


def _delivery(s: Seeded, status: DeliveryStatus, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": new_id("msg"),
        "tenant_id": s.tenant_id,
        "call_id": None,
        "batch_id": None,
        "event": "call.completed",
        "url": "https://hooks.example.com/in",
        "to_endpoint": False,
        "status": status,
        "attempt_count": 0,
        "next_attempt_at": None,
        "published_at": None,
        "lease_expires_at": None,
        "created_at": s.now - timedelta(minutes=30),
        "finished_at": None,
    }
    row.update(fields)
    return row


_OUTPUT = {
    "ok": True,
    "messages": [{"type": "message", "user": "U0123", "text": "x" * 40, "ts": "1.2"}] * 3,
    "has_more": False,
}


def grow(s: Seeded, queued: int) -> None:
    """Add queued calls (and as many finished ones, older, and a delivered webhook event for
    every fourth) until the backlog holds `queued`; ANALYZE on Postgres."""
    add = queued - s.queued
    if add <= 0:
        return
    now, sec = s.now, timedelta(seconds=1)
    batch_ids = [new_id("bt") for _ in range(-(-add // 1000))]
    _insert(
        s.engine,
        _batches,
        [
            {
                "id": b,
                "tenant_id": s.tenant_id,
                "accepted": 1000,
                "rejected": 0,
                "created_at": now - 240 * sec,
            }
            for b in batch_ids
        ],
    )
    rows: list[dict[str, Any]] = []
    # The history first (older, so lower ids), then the backlog: written over the last
    # 4 minutes and published as written, in batches of 1,000.
    for i in range(add):
        made = now - timedelta(days=2) + timedelta(seconds=s.rng.uniform(0, 40 * 3600))
        failed = i % 50 == 0
        rows.append(
            _call(
                s,
                made,
                status=CallStatus.FAILED if failed else CallStatus.COMPLETED,
                error="http_error" if failed else None,
                output=None if failed else _OUTPUT,
                duration_ms=120,
                attempt_count=1,
                published_at=made,
                started_at=made + sec,
                finished_at=made + 2 * sec,
            )
        )
    _insert(s.engine, _calls, rows)
    history = rows
    rows = []
    for i in range(add):
        made = now - timedelta(seconds=s.rng.uniform(0, 240))
        rows.append(
            _call(s, made, batch_id=batch_ids[i // 1000], request_body=None, published_at=made)
        )
    _insert(s.engine, _calls, rows)
    delivered = [
        _delivery(
            s,
            DeliveryStatus.SUCCEEDED,
            call_id=c["id"],
            attempt_count=1,
            next_attempt_at=c["finished_at"],
            published_at=c["finished_at"],
            created_at=c["finished_at"],
            finished_at=c["finished_at"] + sec,
        )
        for c in history[::4]
    ]
    _insert(s.engine, _deliveries, delivered)
    s.queued += add
    s.calls += 2 * add
    s.deliveries += len(delivered)
    if s.engine.dialect.name == "postgresql":
        with s.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))


_RESET_CALL = (
    _calls.update()
    .where(_calls.c.id == bindparam("b_id"))
    .values({c: bindparam(f"b_{c}") for c in _CALL_MUTABLE})
)
_RESET_DELIVERY = (
    _deliveries.update()
    .where(_deliveries.c.id == bindparam("b_id"))
    .values({c: bindparam(f"b_{c}") for c in _DELIVERY_MUTABLE})
)


def reset(s: Seeded) -> None:
    """Put back what a run changed: the calls and deliveries as seeded, no attempts or
    webhook events of the calls it ended."""
    ids = [c["id"] for c in s.touched_calls]
    with s.engine.begin() as conn:
        conn.execute(delete(_attempts).where(_attempts.c.call_id.in_(ids)))
        conn.execute(delete(_deliveries).where(_deliveries.c.call_id.in_(ids)))
        conn.execute(
            _RESET_CALL,
            [{"b_id": c["id"], **{f"b_{k}": c[k] for k in _CALL_MUTABLE}} for c in s.touched_calls],
        )
        conn.execute(
            _RESET_DELIVERY,
            [
                {"b_id": d["id"], **{f"b_{k}": d[k] for k in _DELIVERY_MUTABLE}}
                for d in s.touched_deliveries
            ],
        )


# ---- the statements ---------------------------------------------------------------------


_IN_LIST = re.compile(r"IN \((?:(?:%\(\w+\)s|\?)(?:, )?)+\)")
_COLUMN = re.compile(
    r"\b(?:function_call|webhook_delivery|call_attempt)\.(\w+) (?:=|<|>|IN|IS|NOT)"
)


def normalize(sql: str) -> str:
    """One text per statement, whatever the length of its IN lists."""
    return _IN_LIST.sub("IN (...)", " ".join(sql.split()))


def describe(sql: str) -> str:
    """A statement in a line: its verb, table, and the columns its WHERE compares."""
    words = sql.split()
    verb = words[0].upper()
    table = ""
    for keyword in ("FROM", "UPDATE", "INTO"):
        if keyword in words:
            table = words[words.index(keyword) + 1]
            break
    where = sql.split(" WHERE ", 1)[1] if " WHERE " in sql else ""
    columns = list(dict.fromkeys(_COLUMN.findall(where)))
    tail = " ORDER BY" if "ORDER BY" in sql else ""
    tail += " LIMIT" if "LIMIT" in sql else ""
    if verb == "UPDATE":
        setting = sql.split(" SET ", 1)[1].split(" WHERE ", 1)[0]
        columns_set = re.findall(r"(\w+)=", setting.replace(" ", ""))
        return f"UPDATE {table} SET {','.join(columns_set)} WHERE {','.join(columns)}"
    return f"{verb} {table}" + (f" WHERE {','.join(columns)}" if columns else "") + tail


@dataclass
class Statement:
    sql: str
    parameters: Any
    executemany: bool
    seconds: float


class Capture:
    """Every statement an engine runs while `active`, with its parameters and time."""

    def __init__(self, engine: Engine) -> None:
        self.active = False
        self.statements: list[Statement] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, _cursor: Any, *_: Any) -> None:
        conn.info["sweep_bench_started"] = time.perf_counter()

    def _after(
        self, conn: Any, _cursor: Any, sql: str, parameters: Any, _ctx: Any, executemany: bool
    ) -> None:
        if self.active:
            elapsed = time.perf_counter() - conn.info.pop("sweep_bench_started")
            self.statements.append(Statement(sql, parameters, executemany, elapsed))

    @contextmanager
    def on(self) -> Iterator[list[Statement]]:
        self.statements = []
        self.active = True
        try:
            yield self.statements
        finally:
            self.active = False


# ---- the measurement --------------------------------------------------------------------


def _runtime(engine: Engine, now: datetime) -> Runtime:
    def no_client() -> httpx.AsyncClient:
        raise AssertionError("the sweeper does not call upstreams")

    return make_runtime(
        engine,
        load_catalog(),
        Vault([generate_encryption_key()]),
        no_client,
        max_response_bytes=1000,
        now=now,
    )


def measure(s: Seeded, rt: Runtime, capture: Capture, runs: int) -> dict[str, Any]:
    """`runs` sweeps, each from the same rows: their times, what they did, and each
    statement's time and count per run."""
    times: list[float] = []
    per_query: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    reports: list[dict[str, int]] = []
    published: list[int] = []
    first: dict[str, Statement] = {}
    for _ in range(runs):
        reset(s)
        recorder = RecordingPublisher()
        with capture.on() as statements:
            started = time.perf_counter()
            report = sweep(replace(rt, publisher=recorder))
            times.append((time.perf_counter() - started) * 1000)
        reports.append(report.as_dict())
        published.append(sum(len(ids) for ids, _, _ in recorder.calls) + len(recorder.deliveries))
        seen: dict[str, float] = {}
        for st in statements:
            key = normalize(st.sql)
            first.setdefault(key, st)
            seen[key] = seen.get(key, 0.0) + st.seconds * 1000
            counts[key] = counts.get(key, 0) + 1
        for key, ms in seen.items():
            per_query.setdefault(key, []).append(ms)
    reset(s)
    return {
        "queued": s.queued,
        "calls": s.calls,
        "deliveries": s.deliveries,
        "sweep_ms": {
            "p50": round(statistics.median(times), 2),
            "min": round(min(times), 2),
            "max": round(max(times), 2),
        },
        "runs_ms": [round(t, 2) for t in times],
        "report": reports[0],
        "reports_differ": any(r != reports[0] for r in reports),
        "published": published[0],
        "statements_per_run": round(sum(counts.values()) / runs, 1),
        "queries": {
            describe(key): {
                "per_run": round(counts[key] / runs, 2),
                "p50_ms": round(statistics.median(per_query[key]), 3),
                "max_ms": round(max(per_query[key]), 3),
                "sql": key,
            }
            for key in first
        },
        "_first": first,
    }


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


_SCANS = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


def _pg_plan(conn: Any, st: Statement) -> dict[str, Any]:
    row = conn.exec_driver_sql(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + st.sql, st.parameters
    ).scalar_one()
    top = (json.loads(row) if isinstance(row, str) else row)[0]
    steps, examined = [], 0
    for node in _nodes(top["Plan"]):
        kind = node["Node Type"]
        loops = node.get("Actual Loops", 1)
        rows = int(node.get("Actual Rows", 0) * loops)
        removed = int(
            (node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0))
            * loops
        )
        where = node.get("Index Name") or node.get("Relation Name")
        step = f"{kind}" + (f" {where}" if where else "") + f" rows={rows}"
        if removed:
            step += f" filtered={removed}"
        steps.append(step)
        if kind in _SCANS:
            examined += rows + removed
    plan = top["Plan"]
    return {
        "plan": " > ".join(steps),
        "examined": examined,
        "buffers": plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0),
        "ms": round(top["Execution Time"], 3),
    }


def _sqlite_plan(conn: Any, st: Statement) -> dict[str, Any]:
    steps = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + st.sql, st.parameters).all()
    started = time.perf_counter()
    result = conn.exec_driver_sql(st.sql, st.parameters)
    if result.returns_rows:
        result.fetchall()
    return {
        "plan": " > ".join(str(step[-1]) for step in steps),
        "ms": round((time.perf_counter() - started) * 1000, 3),
    }


def plans(s: Seeded, first: dict[str, Statement]) -> dict[str, dict[str, Any]]:
    """Each statement a run issued, planned from the rows as seeded, with the parameters of
    its first run; changes rolled back."""
    out: dict[str, dict[str, Any]] = {}
    planner = _pg_plan if s.engine.dialect.name == "postgresql" else _sqlite_plan
    for key, st in first.items():
        if st.executemany:
            continue
        reset(s)
        with s.engine.connect() as conn:
            trans = conn.begin()
            try:
                out[describe(key)] = planner(conn, st)
            finally:
                trans.rollback()
    reset(s)
    return out


def run_db(kind: str, sizes: Sequence[int], runs: int) -> dict[str, Any]:
    """Every size on one database ("postgres" or "sqlite"), the backlog grown between."""
    with tempfile.TemporaryDirectory(prefix="passthru-sweep-") as tmp:
        server = PG_URL if kind == "postgres" else None
        with new_database(Path(tmp), server, prefix="bench_sweep") as url:
            engine = create_db_engine(url, pool_size=2)
            try:
                return _run_sizes(kind, engine, sizes, runs)
            finally:
                engine.dispose()


def _run_sizes(kind: str, engine: Engine, sizes: Sequence[int], runs: int) -> dict[str, Any]:
    upgrade(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    s = start(engine, now)
    rt = _runtime(engine, now)
    capture = Capture(engine)
    out: dict[str, Any] = {}
    try:
        for n in sizes:
            started = time.monotonic()
            grow(s, n)
            seeded_s = time.monotonic() - started
            say(f"(g) {kind}: {n} queued calls ({s.calls} calls) in {seeded_s:.0f} s; sweeping")
            result = measure(s, rt, capture, runs)
            result["plans"] = plans(s, result.pop("_first"))
            result["seed_s"] = round(seeded_s, 1)
            out[str(n)] = result
    finally:
        rt.sender.close()
    return out


def sweep_cost(
    db: str, quick: bool, sizes: Sequence[int] | None = None, runs: int = RUNS
) -> dict[str, Any]:
    """(g) on Postgres and SQLite (`db` "both"), or one of them."""
    chosen = tuple(sizes or (QUICK_SIZES if quick else SIZES))
    kinds = ["postgres", "sqlite"] if db == "both" else [db]
    return {kind: run_db(kind, chosen, runs) for kind in kinds}


# ---- the table --------------------------------------------------------------------------


def _grows(first: dict[str, Any] | None, last: dict[str, Any] | None) -> bool:
    """Whether a statement's plan examines rows in proportion to the backlog (Postgres)."""
    if not first or not last or "examined" not in first:
        return False
    return bool(last["examined"] > max(1_000, 5 * first["examined"]))


def table(results: dict[str, Any]) -> str:
    lines = []
    for kind, sizes in results.items():
        lines.append(
            f"sweep ({kind}){'':<4}{'queued':>9}{'p50 ms':>9}{'max ms':>9}"
            f"{'published':>11}{'stmts':>7}  report"
        )
        for n, r in sizes.items():
            report = ", ".join(f"{k} {v}" for k, v in r["report"].items() if v)
            lines.append(
                f"{'':<18}{int(n):>9,}{r['sweep_ms']['p50']:>9.1f}{r['sweep_ms']['max']:>9.1f}"
                f"{r['published']:>11}{r['statements_per_run']:>7.0f}  {report}"
            )
        names = list(dict.fromkeys(name for r in sizes.values() for name in r["queries"]))
        smallest, largest = sizes[min(sizes, key=int)], sizes[max(sizes, key=int)]
        what = "[examined rows]" if kind == "postgres" else "[ms alone]"
        lines.append(f"  per statement ({kind}): ms in a run (p50) {what}, at each size")
        for name in names:
            cells = []
            for r in sizes.values():
                q, plan = r["queries"].get(name), r["plans"].get(name)
                if q is None:
                    cells.append(f"{'-':>20}")
                    continue
                extra = (
                    f"[{plan['examined']:,}]"
                    if plan and "examined" in plan
                    else f"[{plan['ms']:.2f}]"
                    if plan
                    else ""
                )
                cells.append(f"{q['p50_ms']:>8.2f} {extra:>11}")
            grows = _grows(smallest["plans"].get(name), largest["plans"].get(name))
            lines.append(f"    {''.join(cells)}  {'*' if grows else ' '}{name}")
            if plan := largest["plans"].get(name):
                lines.append(f"    {'':>{20 * len(sizes)}}    {plan['plan'][:100]}")
        if kind == "postgres":
            lines.append("    * examines rows in proportion to the backlog")
    return "\n".join(lines)


def main() -> int:
    from bench.__main__ import _postgres_answers, run_header, write_results

    parser = argparse.ArgumentParser(prog="python -m bench.sweep_cost", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}")
    parser.add_argument("--db", choices=["postgres", "sqlite", "both"], default="both")
    parser.add_argument("--sizes", help="queued calls, e.g. 1000,10000,200000")
    parser.add_argument("--runs", type=int, default=RUNS, help="sweeps per size")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else None
    if args.db != "sqlite" and not _postgres_answers():
        print(f"no Postgres at {PG_URL} (set BENCH_DATABASE_URL); SQLite only", file=sys.stderr)
        args.db = "sqlite"
    results = sweep_cost(args.db, args.quick, sizes, args.runs)
    print(table(results))
    write_results("sweep", {**run_header(), "runs": args.runs, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
