"""`GET /rate-limits`: where the tenant's calls stand against the apps' limits."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.account_pages import PAGE_SIZE
from api.deps import (
    AccountsCursor,
    AccountsLimit,
    CatalogDep,
    CurrentTenant,
    EngineDep,
    SettingsDep,
)
from api.limiter_state import rate_limits, unavailable
from api.parsing import JSONRoute
from api.schemas.common import ErrorOut
from api.schemas.ratelimits import RateLimits
from models.ratelimit.rules import parse_rate

router = APIRouter(tags=["rate limits"], route_class=JSONRoute)


@router.get(
    "/rate-limits",
    responses={400: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    summary="Limits, use and pauses of your apps and accounts",
    description="One item per connected account whose app declares limits or is paused: "
    "each limit with `in_use` (its slots taken from now on: calls booked ahead, burst "
    "included) and `next_free_in_ms` (how long a new call would wait for it), and "
    "`paused_until` when the upstream asked for quiet; `tenant_cap` is the operator's cap "
    "on all your calls (PASSTHRU_TENANT_RATE_LIMIT), if set. Accounts are read a page at "
    "a time, newest first, as `GET /connected-accounts` pages them (`limit`, 100 unless "
    "given, at most 500; `cursor`): a page lists those of its accounts that have limits or "
    "a pause, so it may hold fewer items than `limit`, even none, before `next_cursor` "
    "(null on the last page).",
)
async def get_rate_limits(
    request: Request,
    tenant: CurrentTenant,
    engine: EngineDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    cursor: AccountsCursor = None,
    limit: AccountsLimit = PAGE_SIZE,
) -> RateLimits:
    cap = parse_rate(settings.tenant_rate_limit)
    limiter = request.app.state.limiter
    try:
        return await run_in_threadpool(
            rate_limits, engine, catalog, limiter, tenant, cap, cursor, limit
        )
    except redis.RedisError as exc:
        raise unavailable(exc) from None
