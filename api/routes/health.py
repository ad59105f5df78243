"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from api.parsing import JSONRoute
from models.db.migrate import behind

router = APIRouter(tags=["health"], route_class=JSONRoute)


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _db_ok(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        if behind(engine):
            return "database: the schema is behind; run `passthru migrate`"
    except Exception as exc:
        return f"database: {type(exc).__name__}"
    return None


@router.get("/readyz", summary="The database (migrated) and Redis answer")
async def readyz(request: Request) -> Any:
    problems: list[dict[str, str]] = []
    db_problem = await run_in_threadpool(_db_ok, request.app.state.engine)
    if db_problem:
        problems.append({"field": "database", "message": db_problem})
    client = aioredis.Redis.from_url(request.app.state.settings.redis_url)
    try:
        await client.ping()
    except Exception as exc:
        problems.append({"field": "redis", "message": f"redis: {type(exc).__name__}"})
    finally:
        await client.aclose()
    if problems:
        return JSONResponse({"error": "not_ready", "error_details": problems}, status_code=503)
    return {"status": "ready"}
