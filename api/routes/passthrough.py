"""Submitting calls: `POST /{app}-passthrough-request` and `POST /function-calls`."""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.concurrency import run_in_threadpool

from api.call_log import wait_for_final
from api.deps import (
    CatalogDep,
    CurrentTenant,
    EngineDep,
    PublisherDep,
    QuotasDep,
    SettingsDep,
    UserIdHeader,
    WaiterDep,
)
from api.parsing import JSONRoute
from api.prometheus import CALLS_REJECTED
from api.quotas import Quotas
from api.schemas.calls import FunctionCallRequest, PassthroughRequest
from api.schemas.common import ErrorOut
from api.submission import Submission, submit, unknown_app
from api.validation import CallLimits, app_slug_of, parse_prefer
from models.broker import Publisher
from models.calls.resources import CallResult, FunctionCallOut, call_out, call_result
from models.db.tables import Tenant
from models.errors import ApiError, invalid

router = APIRouter(tags=["function calls"], route_class=JSONRoute)

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "will not execute"},
    401: {"model": ErrorOut},
    404: {"model": ErrorOut, "description": "unknown app"},
    409: {"model": ErrorOut, "description": "Idempotency-Key reused with another request"},
    413: {"model": ErrorOut, "description": "body over PASSTHRU_MAX_REQUEST_BYTES"},
    429: {"model": ErrorOut, "description": "a per-tenant bound; see Retry-After"},
}
PreferHeader = Annotated[
    str | None,
    Header(
        description="`wait=N` (0 <= N <= 60): wait up to N s and answer 200 with the result if "
        "the call ended; `respond-async`: answer 202 at once"
    ),
]
KeyHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


async def _accept(
    sub: Submission,
    prefer: str | None,
    response: Response,
    tenant: Tenant,
    engine: EngineDep,
    catalog: CatalogDep,
    waiter: WaiterDep,
    quotas: Quotas,
    publisher: Publisher,
    max_wait_s: float,
) -> FunctionCallOut | CallResult:
    preference = parse_prefer(prefer, max_wait_s)
    wait_s = preference.wait_s or 0.0
    admit = partial(quotas.admit_calls, tenant.id)
    with quotas.waiting(tenant.id, "Prefer") if wait_s else nullcontext():
        try:
            await run_in_threadpool(quotas.prepare, tenant.id)
            call = await run_in_threadpool(
                submit, engine, tenant, catalog, sub, admit, publisher=publisher
            )
        except ApiError as exc:
            CALLS_REJECTED.labels(exc.error).inc()
            raise
        if preference.applied:
            response.headers["Preference-Applied"] = preference.applied
        if wait_s:
            latest = await wait_for_final(engine, waiter, tenant, call.id, wait_s)
            if latest.status.is_final:
                response.status_code = 200
                return call_result(latest)
            call = latest  # not finished in time: the 202 shows where it stands now
    response.status_code = 202
    return call_out(call)


@router.post(
    "/{app}-passthrough-request",
    status_code=202,
    response_model=FunctionCallOut | CallResult,
    responses={**_ERRORS, 200: {"model": CallResult, "description": "finished within wait"}},
    summary="Call the app's API as one of your users",
)
async def passthrough_request(
    app: str,
    body: PassthroughRequest,
    response: Response,
    tenant: CurrentTenant,
    engine: EngineDep,
    catalog: CatalogDep,
    waiter: WaiterDep,
    settings: SettingsDep,
    quotas: QuotasDep,
    publisher: PublisherDep,
    user_id: UserIdHeader = None,
    prefer: PreferHeader = None,
    idempotency_key: KeyHeader = None,
) -> FunctionCallOut | CallResult:
    if catalog.get(app) is None:
        raise unknown_app(app)
    sub = Submission(
        app=app,
        params=body,
        user_id=user_id,
        connected_account_id=body.connected_account_id,
        callback_url=body.callback_url,
        idempotency_key=idempotency_key,
        limits=CallLimits.of(settings),
    )
    return await _accept(
        sub,
        prefer,
        response,
        tenant,
        engine,
        catalog,
        waiter,
        quotas,
        publisher,
        settings.max_wait_s,
    )


@router.post(
    "/function-calls",
    status_code=202,
    response_model=FunctionCallOut | CallResult,
    responses={**_ERRORS, 200: {"model": CallResult, "description": "finished within wait"}},
    summary="Invoke a function (the SDK's form)",
)
async def invoke_function(
    body: FunctionCallRequest,
    response: Response,
    tenant: CurrentTenant,
    engine: EngineDep,
    catalog: CatalogDep,
    waiter: WaiterDep,
    settings: SettingsDep,
    quotas: QuotasDep,
    publisher: PublisherDep,
    user_id: UserIdHeader = None,
    prefer: PreferHeader = None,
    idempotency_key: KeyHeader = None,
) -> FunctionCallOut | CallResult:
    slug = app_slug_of(body.function)
    if slug is None:
        raise invalid("function", "must be '<app>-passthrough-request'")
    if catalog.get(slug) is None:
        raise unknown_app(slug)
    if body.user_id and user_id and body.user_id != user_id:
        raise invalid("user_id", "differs from the X-User-ID header")
    sub = Submission(
        app=slug,
        params=body.params,
        user_id=body.user_id or user_id,
        connected_account_id=body.connected_account_id,
        callback_url=body.callback_url,
        idempotency_key=idempotency_key,
        limits=CallLimits.of(settings),
    )
    return await _accept(
        sub,
        prefer,
        response,
        tenant,
        engine,
        catalog,
        waiter,
        quotas,
        publisher,
        settings.max_wait_s,
    )
