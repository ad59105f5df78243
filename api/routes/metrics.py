"""`GET /metrics`: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.metrics import COUNTERS
from api.parsing import JSONRoute

router = APIRouter(tags=["health"], route_class=JSONRoute)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    state = await run_in_threadpool(generate_latest, request.app.state.metrics)
    return Response(generate_latest(COUNTERS) + state, media_type=CONTENT_TYPE_LATEST)
