"""`GET /metrics` on the API port: Prometheus text, only to the bearer of
PASSTHRU_METRICS_TOKEN (the API serves the same on PASSTHRU_METRICS_PORT, which is not
public). Without a token configured the API port has no /metrics at all."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from api.parsing import JSONRoute
from api.schemas.common import ErrorOut
from models.errors import ApiError, ErrorDetail

router = APIRouter(tags=["health"], route_class=JSONRoute)


def token_matches(authorization: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics (to `Authorization: Bearer <PASSTHRU_METRICS_TOKEN>`)",
    response_class=Response,
    responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
async def metrics(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Response:
    token: str = request.app.state.settings.metrics_token
    if not token:
        raise HTTPException(404)  # as for any unknown path
    if not token_matches(authorization, token):
        raise ApiError(
            "unauthorized",
            [ErrorDetail("Authorization", "send 'Authorization: Bearer <PASSTHRU_METRICS_TOKEN>'")],
            401,
        )
    body = await run_in_threadpool(generate_latest, request.app.state.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
