"""(k) One tenant's batch beside another tenant's backlog on the bulk lane: how long a small
batch takes to finish alone (the baseline, in the same run), beside a backlog on another
bulk shard, and beside a backlog on its own shard (models/broker.py: bulk_queue). A shard's
messages were once taken in arrival order; the lane now takes tenants in turn, and a shard
carries only messages with a countdown (docs/architecture.md "Lanes").

The backlog's calls take 1 s upstream, so it lasts while the small batches are measured;
each small batch's calls answer at once."""

from __future__ import annotations

import time
from typing import Any

import httpx
from sqlalchemy import text

from bench.scenarios import FINAL, USER, say, submit_batches
from bench.stack import Stack
from models.accounts.tenants import create_tenant
from models.broker import bulk_queue

SMALL = 100  # calls in each small batch
BACKLOG_DELAY_MS = 1_000


def tenant(s: Stack, name: str, shard: str | None = None, other_than: str | None = None) -> Any:
    """A new tenant with a bench account; on `shard`, or on any shard but `other_than`."""
    while True:
        made, key = create_tenant(s.engine, name)
        queue = bulk_queue(made.id)
        if (shard is None or queue == shard) and queue != other_than:
            break
    r = httpx.post(
        f"{s.api_url}/connected-accounts",
        json={"app": "bench", "credentials": {"api_key": "bench-key"}},
        headers={"Authorization": f"Bearer {key}", "X-User-ID": USER},
    )
    r.raise_for_status()
    return made.id, key, queue


def finished_of(s: Stack, tenant_id: str) -> int:
    query = f"SELECT count(*) FROM function_call WHERE tenant_id = :t AND status IN {FINAL}"
    with s.engine.connect() as conn:
        return int(conn.execute(text(query), {"t": tenant_id}).scalar_one())


def time_to_done(s: Stack, tenant_id: str, key: str, timeout_s: float) -> float:
    """Submit SMALL calls for the tenant; seconds until the last is final."""
    started = submit_batches(s, key, SMALL)
    deadline = time.monotonic() + timeout_s
    while finished_of(s, tenant_id) < SMALL:
        if time.monotonic() > deadline:
            raise RuntimeError(f"a batch of {SMALL} did not finish in {timeout_s} s")
        time.sleep(0.02)
    return round(time.perf_counter() - started, 2)


def fairness(s: Stack, backlog_calls: int) -> dict[str, Any]:
    big_id, big_key, big_shard = tenant(s, "backlog")
    alone_id, alone_key, _ = tenant(s, "alone", other_than=big_shard)
    say(f"(k) baseline: {SMALL} calls of a tenant alone")
    alone_s = time_to_done(s, alone_id, alone_key, 120)

    say(f"(k) a backlog of {backlog_calls} calls of {BACKLOG_DELAY_MS} ms on {big_shard}")
    submit_batches(s, big_key, backlog_calls, f"&delay_ms={BACKLOG_DELAY_MS}")
    time.sleep(2)  # the backlog's first messages are running

    other_id, other_key, other_shard = tenant(s, "other-shard", other_than=big_shard)
    say(f"(k) {SMALL} calls of a tenant on another shard ({other_shard})")
    other_s = time_to_done(s, other_id, other_key, 600)
    other_backlog_done = finished_of(s, big_id)

    same_id, same_key, _ = tenant(s, "same-shard", shard=big_shard)
    say(f"(k) {SMALL} calls of a tenant on the backlog's shard ({big_shard})")
    same_s = time_to_done(s, same_id, same_key, 600)
    same_backlog_done = finished_of(s, big_id)
    return {
        "backlog": {"calls": backlog_calls, "upstream_delay_ms": BACKLOG_DELAY_MS},
        "alone": {"calls": SMALL, "seconds": alone_s},
        "other_shard": {
            "calls": SMALL,
            "seconds": other_s,
            "backlog_finished_by_then": other_backlog_done,
        },
        "same_shard": {
            "calls": SMALL,
            "seconds": same_s,
            "backlog_finished_by_then": same_backlog_done,
        },
    }


def table(r: dict[str, Any]) -> str:
    b = r["backlog"]
    return (
        f"{'fairness':<16}a batch of {r['alone']['calls']}: alone {r['alone']['seconds']:.2f} s; "
        f"beside {b['calls']} calls of {b['upstream_delay_ms']} ms of another tenant: "
        f"on another shard {r['other_shard']['seconds']:.2f} s "
        f"({r['other_shard']['backlog_finished_by_then']} of the backlog done), "
        f"on the same shard {r['same_shard']['seconds']:.2f} s "
        f"({r['same_shard']['backlog_finished_by_then']} done)"
    )
