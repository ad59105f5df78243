"""Webhooks: the tenant's endpoint and secret; a call's deliveries; redelivery."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import CurrentTenant, EngineDep, PublisherDep, QuotasDep, SettingsDep, VaultDep
from api.parsing import JSONRoute
from api.schemas.common import ErrorOut
from api.schemas.webhooks import DeliveryList, EndpointIn, WebhookEndpointOut
from api.webhook_deliveries import deliveries_of, redeliver
from api.webhook_endpoint import get_endpoint, put_endpoint, rotate_secret
from models.db.engine import utcnow
from models.webhooks.publish import publish_deliveries_or_forget

router = APIRouter(tags=["webhooks"], route_class=JSONRoute)
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    429: {"model": ErrorOut},
}


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
) -> WebhookEndpointOut:
    return put_endpoint(
        engine, vault, tenant, body.url, utcnow(), settings.webhook_allow_private_networks
    )


@router.get("/webhook-endpoint", responses=_ERRORS, summary="Your webhook endpoint")
def get(tenant: CurrentTenant, engine: EngineDep) -> WebhookEndpointOut:
    return get_endpoint(engine, tenant)


@router.post(
    "/webhook-endpoint/rotate-secret",
    responses=_ERRORS,
    summary="A new signing secret (shown once); the old one still signs for 24 hours",
)
def rotate(tenant: CurrentTenant, engine: EngineDep, vault: VaultDep) -> WebhookEndpointOut:
    return rotate_secret(engine, vault, tenant, utcnow())


@router.get(
    "/function-calls/{call_id}/deliveries",
    responses=_ERRORS,
    summary="Webhook deliveries of a call, with every attempt",
)
def deliveries(call_id: str, tenant: CurrentTenant, engine: EngineDep) -> DeliveryList:
    return DeliveryList(items=deliveries_of(engine, tenant, call_id))


@router.post(
    "/function-calls/{call_id}/redeliver",
    status_code=202,
    response_class=Response,
    responses={**_ERRORS, 202: {"description": "the event will be sent again (no body)"}},
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
    await run_in_threadpool(
        publish_deliveries_or_forget, engine, publisher, [delivery_id], {delivery_id: tenant.id}
    )
    return Response(status_code=202)
