"""Liveness and readiness."""

from __future__ import annotations

import redis.asyncio as aioredis
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, text

from api.parsing import JSONRoute
from api.schemas.common import ErrorOut
from api.schemas.health import HealthOut
from models.db.migrate import behind
from models.errors import ApiError, ErrorDetail

router = APIRouter(tags=["health"], route_class=JSONRoute)


@router.get("/healthz", summary="The process is up")
def healthz() -> HealthOut:
    return HealthOut(status="ok")


def _db_ok(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        if behind(engine):
            return "database: the schema is behind; run `passthru migrate`"
    except Exception as exc:
        return f"database: {type(exc).__name__}"
    return None


@router.get(
    "/readyz",
    responses={503: {"model": ErrorOut, "description": "not ready: what does not answer"}},
    summary="The database (migrated) and Redis answer",
)
async def readyz(request: Request) -> HealthOut:
    problems: list[ErrorDetail] = []
    db_problem = await run_in_threadpool(_db_ok, request.app.state.engine)
    if db_problem:
        problems.append(ErrorDetail("database", db_problem))
    client = aioredis.Redis.from_url(request.app.state.settings.redis_url)
    try:
        await client.ping()
    except Exception as exc:
        problems.append(ErrorDetail("redis", f"redis: {type(exc).__name__}"))
    finally:
        await client.aclose()
    if problems:
        raise ApiError("not_ready", problems, 503)
    return HealthOut(status="ready")
