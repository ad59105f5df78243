"""(c) interactive latency at 20 and 200 calls/s: `Prefer: wait` calls sent open loop, against
the same calls sent straight to the stand-in upstream in the same run, both by the client in
bench/pacer.py; the figures (e) reuses (bench/during_bulk.py).

Each passthru call answered 200 is split into hops from the timestamps its row keeps:

- client_to_row: created_at - the client's send time (HTTP into the API, auth, the insert);
- row_to_claim: started_at - created_at (publish, the broker, a worker claiming it);
- claim_to_stored: finished_at - started_at (the upstream exchange included);
- stored_to_answer: the client's receive time - finished_at (the store's commit, the API's
  waiter, the answer).

Each timestamp is taken by its process just before the write that stores it, so a write's
own time counts in the next hop. All clocks are this machine's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, bindparam, text

from api.dev.embedded_redis import free_port
from bench import floor as design_floor
from bench import scenarios as sc
from bench.pacer import Clients, Sample, calls, paced
from bench.stack import Stack

HOPS = {
    "client_to_row": ("sent", "created"),
    "row_to_claim": ("created", "started"),
    "claim_to_stored": ("started", "finished"),
    "stored_to_answer": ("finished", "received"),
}
ID_CHUNK = 500  # ids per `IN (...)`: under SQLite's limit on bound parameters


# ---- figures ----------------------------------------------------------------------------


def compare(direct: list[Sample], through: list[Sample]) -> dict[str, Any]:
    """Latencies of both kinds, what passthru adds, its non-200 answers (no answer included),
    and how late and at what rate the client really sent its calls: it falls behind the rate
    asked when its event loop is starved of CPU or pacer.MAX_IN_FLIGHT calls wait for answers."""
    d = sc.percentiles([x.ms for x in direct])
    p = sc.percentiles([x.ms for x in through])
    return {
        "calls": len(through),
        "direct_ms": d,
        "passthru_ms": p,
        "added_p50_ms": round(p["p50"] - d["p50"], 2),
        "added_p99_ms": round(p["p99"] - d["p99"], 2),
        "not_200": sum(x.status != 200 for x in through),
        "not_200_by_answer": not_200_by_answer(through),
        "client_late_max_ms": max(x.late_ms for x in direct + through),
        "passthru_sent_per_s": _sent_per_s(through),
    }


# What a call not answered 200 got instead: the same keys in every run, so --runs can take
# each one's median. 202: not finished within the wait; 429: a tenant bound (its long polls
# per API process, PASSTHRU_TENANT_MAX_WAITS, at a high rate); none: no answer at all.
NOT_200 = {"202": 202, "429": 429, "503": 503}


def not_200_by_answer(samples: list[Sample]) -> dict[str, int]:
    """How many calls got each answer other than 200."""
    counts = {name: sum(x.status == status for x in samples) for name, status in NOT_200.items()}
    counts["none"] = sum(x.status == 0 for x in samples)
    counts["other"] = sum(x.status not in (0, 200, *NOT_200.values()) for x in samples)
    return counts


def not_200_line(f: dict[str, Any]) -> str:
    """`12 of 6000 not 200 (429: 10, none: 2)`, naming only the answers that came."""
    got = [f"{name}: {n}" for name, n in f["not_200_by_answer"].items() if n]
    return f"{f['not_200']} of {f['calls']} not 200" + (f" ({', '.join(got)})" if got else "")


def _sent_per_s(samples: list[Sample]) -> float:
    """The rate the calls really went out at: below the one asked when the client fell
    behind."""
    span = max(x.sent for x in samples) - min(x.sent for x in samples)
    return round((len(samples) - 1) / span, 1) if span > 0 else 0.0


def _p50_p99(values: list[float]) -> dict[str, float]:
    figures = sc.percentiles(values) if len(values) > 1 else {"p50": values[0], "p99": values[0]}
    return {"p50": round(figures["p50"], 2), "p99": round(figures["p99"], 2)}


def hops(engine: Engine, samples: list[Sample]) -> dict[str, Any]:
    """p50 and p99 (ms) of each hop of the calls answered 200 whose row has all three
    timestamps; `calls` says how many that was."""
    rows = row_times(engine, [x.call_id for x in samples if x.call_id])
    spans: dict[str, list[float]] = {name: [] for name in HOPS}
    for x in samples:
        created, started, finished = rows.get(x.call_id or "", (None, None, None))
        if created is None or started is None or finished is None:
            continue
        points = {
            "sent": x.sent,
            "created": created,
            "started": started,
            "finished": finished,
            "received": x.received,
        }
        for name, (a, b) in HOPS.items():
            spans[name].append((points[b] - points[a]) * 1000)
    counted = len(spans["client_to_row"])
    # The same keys whether or not any call counted: --runs takes each key's median.
    none: dict[str, float | None] = {"p50": None, "p99": None}
    return {"calls": counted, **{n: _p50_p99(v) if v else none for n, v in spans.items()}}


def row_times(engine: Engine, ids: list[str]) -> dict[str, tuple[float | None, ...]]:
    """Each call's created_at, started_at and finished_at as Unix seconds, in one query per
    ID_CHUNK ids. The columns hold naive UTC (models.db.engine.UTCDateTime): Postgres gives
    their epoch, SQLite its text, read here."""
    columns = ("created_at", "started_at", "finished_at")
    if engine.dialect.name == "postgresql":
        selected = ", ".join(f"extract(epoch from {c})" for c in columns)
    else:
        selected = ", ".join(columns)
    query = text(f"SELECT id, {selected} FROM function_call WHERE id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    times: dict[str, tuple[float | None, ...]] = {}
    with engine.connect() as conn:
        for i in range(0, len(ids), ID_CHUNK):
            for row in conn.execute(query, {"ids": ids[i : i + ID_CHUNK]}):
                times[row[0]] = tuple(_unix_s(value) for value in row[1:])
    return times


def _unix_s(value: object) -> float | None:
    """A stored timestamp as Unix seconds: Postgres's epoch (numeric), or SQLite's text
    ('YYYY-MM-DD HH:MM:SS.ffffff', UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
    if isinstance(value, Decimal | float | int):
        return float(value)
    raise TypeError(f"not a timestamp: {value!r}")


# ---- (c) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One rate's calls: direct, through passthru, through the design's floor (None on
    SQLite), and each process's CPU per call of the last two."""

    direct: list[Sample]
    through: list[Sample]
    cpu: dict[str, float]
    floor: list[Sample] | None
    floor_cpu: dict[str, float] | None


def interactive(s: Stack, key: str, rates: list[float], duration_s: float) -> dict[str, Any]:
    """One warm-up (at the highest rate), then for each rate: direct calls, passthru calls
    and, on Postgres, calls through the design's floor (bench/floor.py), each for
    duration_s, all from one event loop; the hops read once every rate has run."""
    floor_url = start_floor(s) if s.database_url.startswith("postgresql") else None
    measured = asyncio.run(_interactive(s, key, rates, duration_s, floor_url))
    return {
        label: {
            **compare(m.direct, m.through),
            "hops_ms": hops(s.engine, m.through),
            "cpu_ms_per_call": m.cpu,
            "floor": floor_figures(m),
        }
        for label, m in measured.items()
    }


def start_floor(s: Stack) -> str:
    """The design's floor beside passthru, on the same Redis, database and upstream: its
    API process and two lane processes (passthru's workers are two); its URL."""
    dsn = design_floor.prepare(s.database_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    s.processes.start_server(
        "floor-api", design_floor.argv_api(port, dsn, s.redis.url), f"{url}/ready"
    )
    for i in range(2):
        lane = design_floor.argv_lane(dsn, s.redis.url, s.upstream_url)
        s.processes.start(f"floor-lane{i}", lane).wait_for_output("ready")
    return f"{url}/call"


def floor_role(name: str) -> str:
    """The role of the stack's process `name` for the floor: its API, its lanes, and the
    upstream it shares with passthru."""
    if name.startswith("floor-lane"):
        return "lanes"
    return {"floor-api": "api", "upstream": "upstream"}.get(name, "")


def floor_cpu_by_role(s: Stack) -> dict[str, float]:
    """sc.cpu_by_role for the floor's processes (Redis and Postgres shared with passthru)."""
    return sc.cpu_by_role(s, ("api", "lanes", "upstream"), floor_role)


def floor_compare(direct: list[Sample], floor: list[Sample]) -> dict[str, Any]:
    """What the floor adds over the direct calls, its latencies and its non-200 answers."""
    f = compare(direct, floor)
    return {
        "added_p50_ms": f["added_p50_ms"],
        "added_p99_ms": f["added_p99_ms"],
        "floor_ms": f["passthru_ms"],
        "not_200": f["not_200"],
    }


def floor_figures(m: Measured) -> dict[str, Any] | None:
    """floor_compare, and each process's CPU per call of the floor."""
    if m.floor is None or m.floor_cpu is None:
        return None
    return {**floor_compare(m.direct, m.floor), "cpu_ms_per_call": m.floor_cpu}


async def _interactive(
    s: Stack, key: str, rates: list[float], duration_s: float, floor_url: str | None
) -> dict[str, Measured]:
    """The calls of interactive(), by label: each rate's samples and each process's CPU per
    call (sc.cpu_by_role; a process idle between calls counts its idle CPU too)."""
    measured: dict[str, Measured] = {}
    async with Clients(s, key, floor_url) as c:
        await c.warm_up(max(rates))
        for rate in rates:
            n = int(rate * duration_s)
            sc.say(f"direct calls at {rate:g}/s for {duration_s:g} s")
            direct = await paced(rate, calls(n), c.direct)
            sc.say(f"passthru Prefer: wait calls at {rate:g}/s for {duration_s:g} s")
            before = sc.cpu_by_role(s)
            through = await paced(rate, calls(n), c.through)
            cpu = sc.cpu_ms_per_call(before, sc.cpu_by_role(s), len(through))
            floor, floor_cpu = None, None
            if floor_url is not None:
                sc.say(f"the design's floor: calls at {rate:g}/s for {duration_s:g} s")
                before = floor_cpu_by_role(s)
                floor = await paced(rate, calls(n), c.floor)
                floor_cpu = sc.cpu_ms_per_call(before, floor_cpu_by_role(s), len(floor))
            measured[f"{rate:g}/s"] = Measured(direct, through, cpu, floor, floor_cpu)
    return measured


def hops_line(h: dict[str, Any]) -> str:
    """The hops of one set of calls, for the table."""
    if not h["calls"]:
        return "hops: no call answered 200 with all three timestamps"
    parts = [f"{name} {h[name]['p50']:.1f}/{h[name]['p99']:.1f}" for name in HOPS]
    return f"hops p50/p99 ms ({h['calls']} calls): " + ", ".join(parts)


def cpu_line(cpu: dict[str, float]) -> str:
    """Each process's CPU per passthru call, for the table."""
    return "CPU ms per call: " + ", ".join(f"{role} {ms:.2f}" for role, ms in cpu.items())


def floor_latency_line(f: dict[str, Any], where: str = "") -> str:
    """floor_compare's figures, for the table."""
    fm = f["floor_ms"]
    return (
        f"the design's floor{where}: added p50 {f['added_p50_ms']:.1f} ms, p99 "
        f"{f['added_p99_ms']:.1f} ms (p50/p99/max {fm['p50']:.1f}/{fm['p99']:.1f}/"
        f"{fm['max']:.1f} ms; {f['not_200']} not 200)"
    )


NO_FLOOR = "the design's floor: not measured (Postgres only)"


def floor_line(f: dict[str, Any] | None) -> str:
    """The design's floor at one rate, for the table."""
    if f is None:
        return NO_FLOOR
    return f"{floor_latency_line(f)}; {cpu_line(f['cpu_ms_per_call'])}"


def table(r: dict[str, Any]) -> str:
    """Four lines per rate: the latencies, the hops, each process's CPU per call, and the
    design's floor."""
    lines = []
    for i, (label, f) in enumerate(r.items()):
        d, p = f["direct_ms"], f["passthru_ms"]
        lines += [
            f"{'interactive' if i == 0 else '':<16}{label}: added p50 {f['added_p50_ms']:.1f} ms,"
            f" p99 {f['added_p99_ms']:.1f} ms; passthru p50/p99/max {p['p50']:.1f}/"
            f"{p['p99']:.1f}/{p['max']:.1f} ms, direct {d['p50']:.1f}/{d['p99']:.1f}/"
            f"{d['max']:.1f} ms; {not_200_line(f)}; sent at "
            f"{f['passthru_sent_per_s']:.0f}/s, up to {f['client_late_max_ms']:.0f} ms late",
            f"{'':<16}  {hops_line(f['hops_ms'])}",
            f"{'':<16}  {cpu_line(f['cpu_ms_per_call'])}",
            f"{'':<16}  {floor_line(f.get('floor'))}",
        ]
    return "\n".join(lines)
