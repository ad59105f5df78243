"""The Function Calls log: one call, the list, its NDJSON export, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.call_export import export_calls
from api.call_log import (
    LogFilter,
    cancel_and_announce,
    list_calls,
    load_attempts,
    load_call,
    wait_for_final,
)
from api.deps import CurrentTenant, EngineDep, PublisherDep, QuotasDep, SettingsDep, WaiterDep
from api.parsing import JSONRoute
from api.prefer import parse_wait
from api.schemas.calls import CallPage
from api.schemas.common import ErrorOut
from models.calls.resources import FunctionCallOut, call_out
from models.calls.states import CallStatus
from models.db.engine import as_utc
from models.errors import invalid

router = APIRouter(prefix="/function-calls", tags=["function calls"], route_class=JSONRoute)
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
}


async def _log_filter(
    app: str | None = None,
    status: CallStatus | None = None,
    user_id: str | None = None,
    batch_id: str | None = None,
    network_code: Annotated[
        str | None, Query(pattern=r"^\d{3}$", description="the upstream status, e.g. 429")
    ] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> LogFilter:
    return LogFilter(
        app,
        status,
        user_id,
        batch_id,
        _moment("since", since),
        _moment("until", until),
        network_code=network_code,
    )


def _moment(name: str, value: datetime | None) -> datetime | None:
    try:
        return as_utc(value)
    except ValueError as exc:
        raise invalid(name, f"a date and time {exc}") from None


Filters = Annotated[LogFilter, Depends(_log_filter)]


@router.get(
    "/export",
    responses=_ERRORS,
    response_class=StreamingResponse,
    summary="The log as NDJSON (one call per line), streamed; same filters as the log",
)
def export(tenant: CurrentTenant, engine: EngineDep, filters: Filters) -> StreamingResponse:
    return StreamingResponse(
        export_calls(engine, tenant, filters),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="function-calls.ndjson"'},
    )


@router.get(
    "/{call_id}",
    responses={**_ERRORS, 429: {"model": ErrorOut, "description": "too many waits open"}},
    summary="One call, with every attempt",
)
async def get_call(
    call_id: str,
    tenant: CurrentTenant,
    engine: EngineDep,
    waiter: WaiterDep,
    settings: SettingsDep,
    quotas: QuotasDep,
    wait: Annotated[
        str | None,
        Query(
            max_length=32,
            description="long-poll up to N seconds (0 to 60) for the call to end",
            examples=["30"],
        ),
    ] = None,
) -> FunctionCallOut:
    wait_s = parse_wait(wait, "wait", settings.max_wait_s) if wait is not None else 0.0
    if wait_s:
        with quotas.waiting(tenant.id, "wait"):
            call = await wait_for_final(engine, waiter, tenant, call_id, wait_s)
    else:
        call = await run_in_threadpool(load_call, engine, tenant, call_id)
    attempts = await run_in_threadpool(load_attempts, engine, call_id)
    return call_out(call, attempts)


@router.get("", responses=_ERRORS, summary="The Function Calls log, newest first")
def list_function_calls(
    tenant: CurrentTenant,
    engine: EngineDep,
    filters: Filters,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> CallPage:
    rows, next_cursor = list_calls(engine, tenant, filters, cursor, limit)
    return CallPage(items=[call_out(c) for c in rows], next_cursor=next_cursor)


@router.post(
    "/{call_id}/cancel",
    responses={**_ERRORS, 409: {"model": ErrorOut, "description": "already running or finished"}},
    summary="Cancel a call that has not started",
)
def cancel(
    call_id: str, tenant: CurrentTenant, engine: EngineDep, publisher: PublisherDep
) -> FunctionCallOut:
    return call_out(cancel_and_announce(engine, publisher, tenant, call_id))
