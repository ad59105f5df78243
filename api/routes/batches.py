"""Bulk submission (`POST /function-calls/batch`) and batch progress (`GET /batches/{id}`)."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.bulk_submission import batch_status, submit_batch
from api.deps import (
    CatalogDep,
    CurrentTenant,
    EngineDep,
    PublisherDep,
    QuotasDep,
    SettingsDep,
    UserIdHeader,
)
from api.parsing import ItemsRoute
from api.schemas.batches import BatchAccepted, BatchIn, BatchOut, BatchSubmitted
from api.schemas.common import ErrorOut
from api.validation import CallLimits

router = APIRouter(tags=["batches"], route_class=ItemsRoute)
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
    413: {"model": ErrorOut, "description": "body over PASSTHRU_MAX_BATCH_REQUEST_BYTES"},
    429: {"model": ErrorOut, "description": "a per-tenant bound; see Retry-After"},
}


@router.post(
    "/function-calls/batch",
    status_code=202,
    responses=_ERRORS,
    summary="Submit up to 1,000 calls; each is accepted or rejected on its own",
)
async def submit(
    body: BatchIn,
    tenant: CurrentTenant,
    engine: EngineDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    quotas: QuotasDep,
    publisher: PublisherDep,
    user_id: UserIdHeader = None,
) -> BatchSubmitted:
    await run_in_threadpool(quotas.prepare, tenant.id)
    batch, accepted, rejected = await run_in_threadpool(
        submit_batch,
        engine,
        tenant,
        catalog,
        body.calls,
        user_id,
        CallLimits.of(settings),
        partial(quotas.admit_calls, tenant.id),
        publisher=publisher,
    )
    return BatchSubmitted(
        batch_id=batch.id,
        accepted=[BatchAccepted(index=i, id=call_id) for i, call_id in accepted],
        rejected=rejected,
    )


@router.get("/batches/{batch_id}", responses=_ERRORS, summary="Calls of a batch, per status")
def get_batch(batch_id: str, tenant: CurrentTenant, engine: EngineDep) -> BatchOut:
    return batch_status(engine, tenant, batch_id)
