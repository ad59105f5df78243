"""Liveness and readiness."""

from __future__ import annotations

import hmac

import redis.asyncio as aioredis
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, text

from api.parsing import JSONRoute
from api.schemas.common import ErrorOut
from api.schemas.health import HealthOut
from models.db.migrate import behind
from models.errors import ApiError, ErrorDetail

INSTANCE_HEADER = "X-Passthru-Instance"
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
async def readyz(request: Request, response: Response) -> HealthOut:
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
    _confirm_instance(request, response)
    return HealthOut(status="ready")


def _confirm_instance(request: Request, response: Response) -> None:
    """Under `passthru dev`, echo its token (PASSTHRU_DEV_INSTANCE) to a probe that sends it,
    so dev knows the API that answers on its port is the one it started; to nobody else."""
    token = request.app.state.settings.dev_instance
    given = request.headers.get(INSTANCE_HEADER, "")
    if token and hmac.compare_digest(given.encode(), token.encode()):
        response.headers[INSTANCE_HEADER] = token
