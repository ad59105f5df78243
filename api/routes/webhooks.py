"""Webhooks: the tenant's endpoint and secret; a call's deliveries; redelivery."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict

from api.deps import CurrentTenant, EngineDep, PublisherDep, QuotasDep, SettingsDep, VaultDep
from api.parsing import JSONRoute
from api.schemas import ErrorOut
from api.webhook_endpoint import deliveries_of, get_endpoint, put_endpoint, redeliver, rotate_secret
from models.db.engine import utcnow

router = APIRouter(tags=["webhooks"], route_class=JSONRoute)
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    429: {"model": ErrorOut},
}


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None


@router.put(
    "/webhook-endpoint",
    responses=_ERRORS,
    summary="Set your default webhook URL (the signing secret is shown the first time)",
)
def put(
    body: EndpointIn,
    tenant: CurrentTenant,
    engine: EngineDep,
    vault: VaultDep,
    settings: SettingsDep,
) -> Any:
    return put_endpoint(
        engine, vault, tenant, body.url, utcnow(), settings.webhook_allow_private_networks
    )


@router.get("/webhook-endpoint", responses=_ERRORS, summary="Your webhook endpoint")
def get(tenant: CurrentTenant, engine: EngineDep) -> Any:
    return get_endpoint(engine, tenant)


@router.post(
    "/webhook-endpoint/rotate-secret",
    responses=_ERRORS,
    summary="A new signing secret (shown once); the old one still signs for 24 hours",
)
def rotate(tenant: CurrentTenant, engine: EngineDep, vault: VaultDep) -> Any:
    return rotate_secret(engine, vault, tenant, utcnow())


@router.get(
    "/function-calls/{call_id}/deliveries",
    responses=_ERRORS,
    summary="Webhook deliveries of a call, with every attempt",
)
def deliveries(call_id: str, tenant: CurrentTenant, engine: EngineDep) -> dict[str, Any]:
    return {"items": deliveries_of(engine, tenant, call_id)}


@router.post(
    "/function-calls/{call_id}/redeliver",
    status_code=202,
    responses=_ERRORS,
    summary="Send the call's webhook again",
)
async def redeliver_call(
    call_id: str,
    tenant: CurrentTenant,
    engine: EngineDep,
    quotas: QuotasDep,
    publisher: PublisherDep,
) -> Response:
    await run_in_threadpool(quotas.admit_redelivery, tenant.id)
    delivery_id = await run_in_threadpool(redeliver, engine, tenant, call_id, utcnow())
    await run_in_threadpool(publisher.publish_deliveries, [delivery_id])
    return Response(status_code=202)
