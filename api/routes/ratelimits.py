"""`GET /rate-limits`: where the tenant's calls stand against the apps' limits."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import CatalogDep, CurrentTenant, EngineDep, SettingsDep
from api.limiter_state import rate_limits, unavailable
from api.parsing import JSONRoute
from api.schemas.common import ErrorOut
from api.schemas.ratelimits import RateLimits
from models.ratelimit.rules import parse_rate

router = APIRouter(tags=["rate limits"], route_class=JSONRoute)


@router.get(
    "/rate-limits",
    responses={503: {"model": ErrorOut}},
    summary="Limits, use and pauses of your apps and accounts",
    description="One item per connected account whose app declares limits or is paused: "
    "each limit with `in_use` (its slots taken from now on: calls booked ahead, burst "
    "included) and `next_free_in_ms` (how long a new call would wait for it), and "
    "`paused_until` when the upstream asked for quiet; `tenant_cap` is the operator's cap "
    "on all your calls (PASSTHRU_TENANT_RATE_LIMIT), if set.",
)
async def get_rate_limits(
    request: Request,
    tenant: CurrentTenant,
    engine: EngineDep,
    catalog: CatalogDep,
    settings: SettingsDep,
) -> RateLimits:
    cap = parse_rate(settings.tenant_rate_limit)
    try:
        return await run_in_threadpool(
            rate_limits, engine, catalog, request.app.state.limiter, tenant, cap
        )
    except redis.RedisError as exc:
        raise unavailable(exc) from None
