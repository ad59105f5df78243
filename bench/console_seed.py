"""The calls `bench/console_log.py` reads: one tenant's day of 100,000 calls (and another
tenant's, as noise), and the filters a console user would try on them.

A seeded random generator makes every run write the same mix: ten apps (slack 35%,
hubspot 20%, ... the last 2%), 2,000 end users whose calls follow a power law (the busiest
has hundreds, most have a few dozen), 90% completed, 5% failed, the rest queued, running,
retrying or cancelled; network codes 200 (most), 201, 400, 404, 429, 500; 30% of the calls
in batches of 500. Ids are made from each call's `created_at`, as the API makes them.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from sqlalchemy import Engine, insert

from models.accounts.tenants import create_tenant
from models.db.ids import new_id
from models.db.tables import FunctionCall

CALLS = 100_000
QUICK_CALLS = 20_000
USERS = 2_000
BATCH_SIZE = 500
BATCHED = 0.3  # the share of calls that came in batches
CHUNK = 5_000  # rows per INSERT
APPS = {
    "slack": 35,
    "hubspot": 20,
    "pipedrive": 15,
    "zendesk": 10,
    "github": 7,
    "notion": 4,
    "salesforce": 3,
    "jira": 2,
    "asana": 2,
    "intercom": 2,
}
STATUSES = {"completed": 900, "failed": 50, "queued": 20, "running": 10, "retrying": 10}
STATUSES["cancelled"] = 10
CODES = {"200": 850, "201": 50, "404": 40, "429": 30, "400": 20, "500": 10}

# A power law: the busiest user has about 8% of the calls, user-0042 about 0.3%, the
# quietest a few calls.
_USER_CUMULATIVE = list(accumulate(1 / (k + 1) ** 0.9 for k in range(USERS)))
_calls = FunctionCall.__table__  # type: ignore[attr-defined]


@dataclass
class Seeded:
    api_key: str
    tenant_id: str
    filters: dict[str, dict[str, str]]  # name -> the query string's values


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), list(weights.values()))[0]


def _row(rng: random.Random, tenant_id: str, at: datetime, batch_id: str | None) -> dict[str, Any]:
    app = _pick(rng, APPS)
    status = _pick(rng, STATUSES)
    code = _pick(rng, CODES) if status == "completed" else None
    user = rng.choices(range(USERS), cum_weights=_USER_CUMULATIVE)[0]
    done = status in ("completed", "failed", "cancelled")
    return {
        "id": new_id("fc", now_ms=int(at.timestamp() * 1000)),
        "tenant_id": tenant_id,
        "app": app,
        "function": f"{app}-passthrough-request",
        "user_id": f"user-{user:04d}",
        "connected_account_id": f"ca_{app}_{user:04d}",
        "batch_id": batch_id,
        "method": rng.choice(("GET", "GET", "GET", "POST", "PATCH")),
        "url": f"https://{app}.example/api/v1/items?page={rng.randint(1, 9)}",
        "status": status,
        "error": "timeout" if status == "failed" else None,
        "network_code": code,
        "output": {"ok": code is not None, "items": [1, 2, 3]} if code else None,
        "output_truncated": False,
        "duration_ms": rng.randint(40, 900) if done else None,
        "attempt_count": 2 if status == "retrying" else 1,
        "published_at": at,
        "created_at": at,
        "started_at": at if status != "queued" else None,
        "finished_at": at + timedelta(milliseconds=500) if done else None,
    }


def _write(
    engine: Engine, rng: random.Random, tenant_id: str, calls: int, end: datetime
) -> list[str]:
    """`calls` calls over the day before `end`; returns the batch ids."""
    step = timedelta(days=1) / calls
    batches: list[str] = []
    rows: list[dict[str, Any]] = []
    batch_id, batch_left = None, 0
    for i in range(calls):
        at = end - timedelta(days=1) + step * i
        if batch_left == 0 and rng.random() < BATCHED / BATCH_SIZE:
            batch_id, batch_left = new_id("bt", now_ms=int(at.timestamp() * 1000)), BATCH_SIZE
            batches.append(batch_id)
        rows.append(_row(rng, tenant_id, at, batch_id if batch_left else None))
        batch_left = max(0, batch_left - 1)
        if len(rows) == CHUNK:
            with engine.begin() as conn:
                conn.execute(insert(_calls), rows)
            rows = []
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(_calls), rows)
    return batches


def _filters(batches: list[str], end: datetime) -> dict[str, dict[str, str]]:
    """The filters a console user tries: each alone, a time window (and each of its ends
    alone), two combinations."""
    since = (end - timedelta(hours=7)).isoformat()
    until = (end - timedelta(hours=6)).isoformat()
    user = "user-0042"  # a user of average activity
    return {
        "none": {},
        "app": {"app": "hubspot"},
        "status": {"status": "failed"},
        "user_id": {"user_id": user},
        "batch_id": {"batch_id": batches[len(batches) // 2]},
        "network_code": {"network_code": "429"},
        "since_until": {"since": since, "until": until},
        "since": {"since": (end - timedelta(hours=20)).isoformat()},
        "until": {"until": (end - timedelta(hours=18)).isoformat()},
        "app_status": {"app": "hubspot", "status": "failed"},
        "user_status": {"user_id": user, "status": "completed"},
    }


def seed(engine: Engine, calls: int) -> Seeded:
    """Two tenants' calls; the first tenant's key and the filters to try on its log."""
    end = datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(7)
    tenant, key = create_tenant(engine, "bench-console")
    other, _ = create_tenant(engine, "bench-noise")
    batches = _write(engine, rng, tenant.id, calls, end)
    _write(engine, rng, other.id, calls, end)
    return Seeded(key, tenant.id, _filters(batches, end))


def write_cost(engine: Engine, calls: int) -> float:
    """Seconds to write `calls` more calls (a new tenant's, 5,000 per INSERT): what the
    indexes cost the writes."""
    tenant, _ = create_tenant(engine, f"bench-writes-{new_id('x')[-6:]}")
    started = time.perf_counter()
    _write(engine, random.Random(11), tenant.id, calls, datetime.now(UTC))
    return time.perf_counter() - started
