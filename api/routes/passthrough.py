"""Submitting calls: `POST /{app}-passthrough-request` and `POST /function-calls`."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import CurrentTenant, IntakeDep
from api.intake import Accepted
from api.parsing import JSONRoute
from api.schemas.calls import FunctionCallRequest, PassthroughRequest
from api.schemas.common import ErrorOut
from api.submit_headers import DOCUMENTED, SubmitHeadersDep
from models.calls.resources import CallResult, FunctionCallOut
from models.errors import invalid

router = APIRouter(tags=["function calls"], route_class=JSONRoute)

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "will not execute"},
    401: {"model": ErrorOut},
    404: {"model": ErrorOut, "description": "unknown app"},
    409: {"model": ErrorOut, "description": "Idempotency-Key reused with another request"},
    413: {"model": ErrorOut, "description": "body over PASSTHRU_MAX_REQUEST_BYTES"},
    429: {"model": ErrorOut, "description": "a per-tenant bound; see Retry-After"},
}


def _answer(accepted: Accepted) -> Response:
    """The answer as it is: the model's JSON, or a result's as a worker announced it."""
    body, applied = accepted.body, accepted.preference_applied
    return Response(
        body if isinstance(body, bytes) else body.model_dump_json(),
        accepted.status_code,
        {"Preference-Applied": applied} if applied else None,
        media_type="application/json",
    )


@router.post(
    "/{app}-passthrough-request",
    status_code=202,
    response_model=FunctionCallOut | CallResult,
    responses={**_ERRORS, 200: {"model": CallResult, "description": "finished within wait"}},
    summary="Call the app's API as one of your users",
    openapi_extra=DOCUMENTED,
)
async def passthrough_request(
    app: str,
    body: PassthroughRequest,
    tenant: CurrentTenant,
    intake: IntakeDep,
    headers: SubmitHeadersDep,
) -> Response:
    sub = intake.passthrough(app, body, headers.user_id, headers.idempotency_key)
    return _answer(await intake.accept(tenant, sub, headers.prefer))


@router.post(
    "/function-calls",
    status_code=202,
    response_model=FunctionCallOut | CallResult,
    responses={**_ERRORS, 200: {"model": CallResult, "description": "finished within wait"}},
    summary="Invoke a function (the SDK's form)",
    openapi_extra=DOCUMENTED,
)
async def invoke_function(
    body: FunctionCallRequest,
    tenant: CurrentTenant,
    intake: IntakeDep,
    headers: SubmitHeadersDep,
) -> Response:
    user_id = headers.user_id
    sub = intake.function_call(body, user_id, headers.idempotency_key)
    if body.user_id and user_id and body.user_id != user_id:
        raise invalid("user_id", "differs from the X-User-ID header")
    return _answer(await intake.accept(tenant, sub, headers.prefer))
