"""Bulk submission (`POST /function-calls/batch`) and batch progress (`GET /batches/{id}`)."""

from __future__ import annotations

from fastapi import APIRouter

from api.bulk_submission import batch_status
from api.deps import CurrentTenant, EngineDep, IntakeDep, UserIdHeader
from api.parsing import ItemsRoute
from api.schemas.batches import BatchIn, BatchOut, BatchSubmitted
from api.schemas.common import ErrorOut

router = APIRouter(tags=["batches"], route_class=ItemsRoute)
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
    413: {"model": ErrorOut, "description": "body over PASSTHRU_MAX_BATCH_REQUEST_BYTES"},
    429: {"model": ErrorOut, "description": "a per-tenant bound; see Retry-After"},
}
_SUBMIT_ERRORS: dict[int | str, dict[str, object]] = {
    **_ERRORS,
    500: {
        "model": ErrorOut,
        "description": "`batch_interrupted`: the batch was written (named in the message), "
        "but the process taking it in stopped before answering; do not send it again",
    },
    503: {
        "model": ErrorOut,
        "description": "nothing was written (the database is unavailable, or the batch "
        "intake restarted); send it again after Retry-After",
    },
}


@router.post(
    "/function-calls/batch",
    status_code=202,
    responses=_SUBMIT_ERRORS,
    summary="Submit up to 1,000 calls; each is accepted or rejected on its own",
)
async def submit(
    body: BatchIn, tenant: CurrentTenant, intake: IntakeDep, user_id: UserIdHeader = None
) -> BatchSubmitted:
    return await intake.accept_batch(tenant, body.calls, user_id)


@router.get("/batches/{batch_id}", responses=_ERRORS, summary="Calls of a batch, per status")
def get_batch(batch_id: str, tenant: CurrentTenant, engine: EngineDep) -> BatchOut:
    return batch_status(engine, tenant, batch_id)
