"""The console's rate limits page: the signed-in tenant's limiter state, read with the
function `GET /rate-limits` answers with (`api/limiter_state.py`), so the page and the API
show the same numbers, for a page of the tenant's accounts at a time, as the API pages
them. Each limit is a use bar and its numbers in words; a Redis that does not answer is a
503 page naming the error's class alone (its message names hosts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import redis
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from api.account_pages import PAGE_SIZE
from api.console.forms import field
from api.console.manage import next_url
from api.console.pages import render
from api.console.views import Segment, duration
from api.console.visitor import SignedIn
from api.limiter_state import rate_limits, unavailable
from api.schemas.ratelimits import AccountLimits, LimitUse
from models.catalog.apps import Catalog
from models.ratelimit.rules import parse_rate
from models.ratelimit.store import Limiter
from models.settings import Settings

# What a wait of nothing shows.
NO_WAIT = "now"


@dataclass(frozen=True)
class Meter:
    """A limit's use as shown: `in_use` of `limit` slots taken, the bar's one segment, and
    how long a new call would wait. `over`: slots are booked past one whole period."""

    in_use: int
    limit: int
    over: bool
    bar: list[Segment]
    wait: str


def meter(in_use: int, limit: int, next_free_in_ms: int) -> Meter:
    over = in_use > limit
    width = 100.0 if over or not limit else round(100 * in_use / limit, 2)
    bar = [Segment("over" if over else "use", in_use, 0.0, width)] if in_use else []
    wait = NO_WAIT if next_free_in_ms <= 0 else duration(next_free_in_ms)
    return Meter(in_use, limit, over, bar, wait)


@dataclass(frozen=True)
class AccountShown:
    """One account's limits as shown, with how long its pause still lasts (if paused)."""

    item: AccountLimits
    paused_until: datetime | None
    pause_left: str | None
    limits: list[tuple[LimitUse, Meter]]


def _account(item: AccountLimits, as_of: datetime) -> AccountShown:
    paused_until = datetime.fromisoformat(item.paused_until) if item.paused_until else None
    left_ms = int((paused_until - as_of).total_seconds() * 1000) if paused_until else None
    return AccountShown(
        item,
        paused_until,
        None if left_ms is None else duration(max(left_ms, 0)),
        [(use, meter(use.in_use, use.limit, use.next_free_in_ms)) for use in item.limits],
    )


def rate_limits_page(
    engine: Engine,
    catalog: Catalog,
    limiter: Limiter,
    settings: Settings,
    who: SignedIn,
    params: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Each account's limits, use and pause, and the operator's cap per lane, as `GET
    /rate-limits` answers them for this tenant: a page of its accounts (as many as the
    API's page), from the query string's cursor, with a **Next** link."""
    cap = parse_rate(settings.tenant_rate_limit)
    cursor = field(params or {}, "cursor")
    try:
        state = rate_limits(engine, catalog, limiter, who.tenant, cap, cursor, PAGE_SIZE)
    except redis.RedisError as exc:
        raise unavailable(exc) from None
    as_of = datetime.fromisoformat(state.as_of)
    lanes = []
    if state.tenant_cap is not None:
        limit = state.tenant_cap.limit
        lanes = [
            (lane, meter(use.in_use, limit, use.next_free_in_ms))
            for lane, use in state.tenant_cap.lanes.items()
        ]
    return render(
        "rate_limits.html",
        as_of=as_of,
        cap=state.tenant_cap,
        lanes=lanes,
        accounts=[_account(item, as_of) for item in state.items],
        shown=PAGE_SIZE,
        first_page=cursor is None,
        next_url=next_url("/console/rate-limits", state.next_cursor),
        csrf_token=who.csrf_token,
        signed_in=True,
    )
