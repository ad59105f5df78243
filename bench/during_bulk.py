"""(e) interactive during bulk: `Prefer: wait` calls at 10/s while a batch of bulk calls to
the instant upstream drains through the same workers, against direct calls at 10/s measured in
the same run before the drain. The calls sent while the bulk batches were still being
submitted are reported apart from those sent after: the API and Postgres then take in the
batches' calls besides the drain, and the slowest interactive calls fell there.

On Postgres, a second drain of the same size follows, with calls through the design's floor
(bench/floor.py) beside it instead of passthru's: what the design's round trips cost on this
machine while passthru drains a batch, before any of passthru's own work."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from sqlalchemy import text

from bench import scenarios as sc
from bench.interactive import (
    NO_FLOOR,
    compare,
    floor_compare,
    floor_latency_line,
    hops,
    hops_line,
    not_200_line,
    start_floor,
)
from bench.pacer import Clients, Sample, Send, calls, paced
from bench.stack import Stack

RATE = 10.0
MIN_S = 5.0  # interactive calls for at least this long, even if the drain ends sooner


def bulk_finished(s: Stack) -> int:
    """Calls submitted through the batch API (the interactive ones have no batch) that are
    in a final state."""
    query = (
        f"SELECT count(*) FROM function_call WHERE status IN {sc.FINAL} AND batch_id IS NOT NULL"
    )
    with s.engine.connect() as conn:
        return int(conn.execute(text(query)).scalar_one())


class Drain(threading.Thread):
    """Submits n calls as (a) does, then polls how many have finished until all have;
    `failed` keeps what went wrong, for the caller to raise."""

    def __init__(self, s: Stack, key: str, n: int) -> None:
        super().__init__(name="bulk-drain", daemon=True)
        self.s, self.key, self.n = s, key, n
        self.done = 0  # bulk calls finished, as last polled
        self.started = self.ended = 0.0  # perf_counter
        # time.time(), to compare with the samples' send times: every batch answered, and
        # every bulk call finished
        self.submitted_wall = self.ended_wall = 0.0
        self.submitting_s = 0.0  # from the first batch sent to the last one answered
        self.over = threading.Event()
        self.failed: Exception | None = None

    def run(self) -> None:
        try:
            base = bulk_finished(self.s)
            self.started = sc.submit_batches(self.s, self.key, self.n)
            self.submitted_wall = time.time()
            self.submitting_s = time.perf_counter() - self.started
            deadline = time.monotonic() + max(120, self.n / 50)
            while self.done < self.n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {self.done} of {self.n} bulk calls finished")
                time.sleep(0.05)
                self.done = bulk_finished(self.s) - base
            self.ended, self.ended_wall = time.perf_counter(), time.time()
        except Exception as exc:
            self.failed = exc
        finally:
            self.over.set()


async def _during(send: Send, drain: Drain) -> tuple[list[Sample], int]:
    """Calls at RATE from the drain's start until it is over (at least MIN_S of them);
    return them and the bulk calls finished when the last one was sent. The caller joins
    the drain, outside the event loop."""
    at_last_send = 0

    def more(i: int) -> bool:
        nonlocal at_last_send
        if drain.over.is_set() and (i >= RATE * MIN_S or drain.failed):
            return False
        at_last_send = drain.done
        return True

    drain.start()
    through = await paced(RATE, more, send)
    return through, at_last_send


async def _calls(
    s: Stack, key: str, drains: list[Drain], baseline_s: float, floor_url: str | None
) -> tuple[list[Sample], list[tuple[list[Sample], int]]]:
    """Warm-up, the direct baseline for baseline_s, then the first drain with passthru calls
    beside it and, given the floor's URL, the second with the floor's: the direct samples,
    and each drain's samples with the bulk calls finished at its last send."""
    async with Clients(s, key, floor_url) as c:
        await c.warm_up(RATE)
        sc.say(f"direct calls at {RATE:g}/s for {baseline_s:g} s, before the drain")
        direct = await paced(RATE, calls(int(RATE * baseline_s)), c.direct)
        n = drains[0].n
        sc.say(f"{n} bulk calls, and passthru Prefer: wait calls at {RATE:g}/s until drained")
        measured = [await _during(c.through, drains[0])]
        if floor_url is not None:
            sc.say(f"{n} more bulk calls, and the design's floor at {RATE:g}/s until drained")
            drains[0].join()
            measured.append(await _during(c.floor, drains[1]))
    return direct, measured


def during_bulk(s: Stack, key: str, n: int, baseline_s: float) -> dict[str, Any]:
    """The calls of _calls, all from one event loop; the hops read afterwards."""
    floor_url = start_floor(s) if s.database_url.startswith("postgresql") else None
    drains = [Drain(s, key, n) for _ in range(1 if floor_url is None else 2)]
    direct, measured = asyncio.run(_calls(s, key, drains, baseline_s, floor_url))
    for drain in drains:
        drain.join()
        if drain.failed:
            raise drain.failed
    (through, at_last_send), drain = measured[0], drains[0]
    return {
        **compare(direct, through),
        **_phases(through, drain),
        "hops_ms": hops(s.engine, through),
        "bulk_calls": n,
        "bulk_seconds": round(drain.ended - drain.started, 2),
        "bulk_calls_per_s": _drain_rate(drain),
        "bulk_finished_at_last_send": at_last_send,
        "floor": _floor(direct, measured[1][0], drains[1]) if floor_url is not None else None,
    }


def _phases(samples: list[Sample], drain: Drain) -> dict[str, Any]:
    """The calls sent before the drain ended, and those sent while its batches were
    submitted and after, with their latencies."""
    during = [x for x in samples if x.sent <= drain.ended_wall]
    submitting = [x.ms for x in during if x.sent <= drain.submitted_wall]
    after = [x.ms for x in during if x.sent > drain.submitted_wall]
    return {
        "sent_during_drain": len(during),
        "during_drain_ms": _percentiles([x.ms for x in during]),
        "submitting_s": round(drain.submitting_s, 2),
        "sent_while_submitting": len(submitting),
        "while_submitting_ms": _percentiles(submitting),
        "sent_after_submitting": len(after),
        "after_submitting_ms": _percentiles(after),
    }


def _floor(direct: list[Sample], samples: list[Sample], drain: Drain) -> dict[str, Any]:
    """The floor's calls during the second drain, as passthru's are reported."""
    return {
        **floor_compare(direct, samples),
        **_phases(samples, drain),
        "bulk_calls_per_s": _drain_rate(drain),
    }


def _drain_rate(drain: Drain) -> float:
    return round(drain.n / (drain.ended - drain.started), 1)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    """sc.percentiles, or the same keys without figures for fewer than two values."""
    if len(values) < 2:
        return {"p50": None, "p99": None, "max": None}
    return dict(sc.percentiles(values))


def table(r: dict[str, Any]) -> str:
    """The latencies and the drain on one line, the hops on the next."""
    d, p = r["direct_ms"], r["passthru_ms"]
    return "\n".join(
        [
            f"{'during bulk':<16}{RATE:g}/s while {r['bulk_calls']} bulk calls drained at "
            f"{r['bulk_calls_per_s']:.0f}/s: added p50 {r['added_p50_ms']:.1f} ms, p99 "
            f"{r['added_p99_ms']:.1f} ms; passthru p50/p99/max {p['p50']:.1f}/{p['p99']:.1f}/"
            f"{p['max']:.1f} ms, direct {d['p50']:.1f}/{d['p99']:.1f}/{d['max']:.1f} ms; "
            f"{not_200_line(r)}, sent at {r['passthru_sent_per_s']:.0f}/s;"
            f" {r['bulk_finished_at_last_send']} bulk calls finished at the last send",
            f"{'':<16}  {r['sent_during_drain']} sent before the drain ended: "
            f"{_figures(r['during_drain_ms'])}",
            f"{'':<16}  {r['sent_while_submitting']} sent while the batches were submitted "
            f"({r['submitting_s']:.1f} s): {_figures(r['while_submitting_ms'])}; "
            f"{r['sent_after_submitting']} after: {_figures(r['after_submitting_ms'])}",
            f"{'':<16}  {hops_line(r['hops_ms'])}",
            f"{'':<16}  {_floor_line(r.get('floor'))}",
        ]
    )


def _floor_line(f: dict[str, Any] | None) -> str:
    """The design's floor beside the second drain, for the table."""
    if f is None:
        return NO_FLOOR
    return (
        floor_latency_line(f, f" beside a second drain ({f['bulk_calls_per_s']:.0f}/s)")
        + f"; {f['sent_while_submitting']} sent while submitted: "
        f"{_figures(f['while_submitting_ms'], '')}; {f['sent_after_submitting']} after: "
        f"{_figures(f['after_submitting_ms'], '')}"
    )


def _figures(ms: dict[str, float | None], who: str = "passthru ") -> str:
    if ms["p50"] is None or ms["p99"] is None or ms["max"] is None:
        return "too few for percentiles"
    return f"{who}p50/p99/max {ms['p50']:.1f}/{ms['p99']:.1f}/{ms['max']:.1f} ms"
