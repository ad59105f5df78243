"""The web console (`/console`): sign in and out, the Function Calls log, a call's page with
its cancel and redeliver buttons, batches, connected accounts with their enable and disable
buttons and a form that makes connect links, rate limits, and the webhook endpoint with its
save and rotate buttons. Thin: the work is in `api/console/`."""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from api.call_log import cancel_and_announce
from api.console import connect_links, last_hour, manage, rate_limits, screens, signin, webhook
from api.console.pages import ConsoleRoute, see_other
from api.console.visitor import CheckedForm, SignedInDep
from api.deps import CatalogDep, EngineDep, PublisherDep, QuotasDep, SettingsDep, VaultDep
from api.routes.connect import ConnectDep
from api.webhook_deliveries import redeliver as redeliver_call
from models.db.engine import utcnow
from models.webhooks.publish import publish_deliveries_or_forget

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
CallId = Annotated[str, Path(max_length=64)]
BatchId = Annotated[str, Path(max_length=64)]
AccountId = Annotated[str, Path(max_length=64)]
ConsoleNow = Annotated[datetime, Depends(last_hour.console_now)]
# The console's static files, read once: name → (bytes, media type).
_STATIC = {
    name: (files("api.console").joinpath(f"static/{name}").read_bytes(), media_type)
    for name, media_type in (("console.css", "text/css"), ("live.js", "text/javascript"))
}


@router.get("")
async def log(request: Request, who: SignedInDep, engine: EngineDep) -> Response:
    params = dict(request.query_params)
    return await run_in_threadpool(screens.log_page, engine, who, params)


@router.get("/console.css")
@router.get("/live.js")
def static_file(request: Request) -> Response:
    content, media_type = _STATIC[request.url.path.rsplit("/", 1)[1]]
    headers = {"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"}
    return Response(content, media_type=media_type, headers=headers)


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    return await signin.sign_in_page(request)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    return await signin.sign_in(request)


@router.post("/sign-out")
async def sign_out(request: Request, who: SignedInDep, _: CheckedForm) -> Response:
    return await signin.sign_out(request, who)


@router.get("/calls/{call_id}")
async def call(call_id: CallId, who: SignedInDep, engine: EngineDep) -> Response:
    return await run_in_threadpool(screens.call_page, engine, who, call_id)


@router.post("/calls/{call_id}/cancel")
async def cancel(
    call_id: CallId, who: SignedInDep, _: CheckedForm, engine: EngineDep, publisher: PublisherDep
) -> Response:
    await run_in_threadpool(cancel_and_announce, engine, publisher, who.tenant, call_id)
    return see_other(f"/console/calls/{call_id}")


@router.post("/calls/{call_id}/redeliver")
async def redeliver(
    call_id: CallId,
    who: SignedInDep,
    _: CheckedForm,
    engine: EngineDep,
    quotas: QuotasDep,
    publisher: PublisherDep,
) -> Response:
    """As POST /function-calls/{id}/redeliver: the tenant's redelivery rate first."""
    await run_in_threadpool(quotas.admit_redelivery, who.tenant.id)
    delivery_id = await run_in_threadpool(redeliver_call, engine, who.tenant, call_id, utcnow())
    await run_in_threadpool(
        publish_deliveries_or_forget,
        engine,
        publisher,
        [delivery_id],
        {delivery_id: who.tenant.id},
    )
    return see_other(f"/console/calls/{call_id}")


@router.get("/batches")
async def batches(request: Request, who: SignedInDep, engine: EngineDep) -> Response:
    params = dict(request.query_params)
    return await run_in_threadpool(manage.batches_page, engine, who, params)


@router.get("/batches/{batch_id}")
async def batch(batch_id: BatchId, who: SignedInDep, engine: EngineDep) -> Response:
    return await run_in_threadpool(manage.batch_page, engine, who, batch_id)


@router.get("/accounts")
async def accounts(request: Request, who: SignedInDep, engine: EngineDep) -> Response:
    params = dict(request.query_params)
    return await run_in_threadpool(manage.accounts_page, engine, who, params)


@router.post("/accounts/{account_id}/status")
async def account_status(
    account_id: AccountId,
    who: SignedInDep,
    form: CheckedForm,
    engine: EngineDep,
    catalog: CatalogDep,
    vault: VaultDep,
) -> Response:
    await run_in_threadpool(manage.switch_account, engine, who, catalog, vault, account_id, form)
    return see_other("/console/accounts")


@router.post("/accounts/connect-link")
async def connect_link(who: SignedInDep, form: CheckedForm, connect: ConnectDep) -> Response:
    return await run_in_threadpool(connect_links.create_link, connect, who, form)


@router.get("/rate-limits")
async def limits(
    request: Request,
    who: SignedInDep,
    engine: EngineDep,
    catalog: CatalogDep,
    settings: SettingsDep,
) -> Response:
    limiter = request.app.state.limiter
    params = dict(request.query_params)
    return await run_in_threadpool(
        rate_limits.rate_limits_page, engine, catalog, limiter, settings, who, params
    )


@router.get("/webhook")
async def webhook_endpoint(who: SignedInDep, engine: EngineDep) -> Response:
    return await run_in_threadpool(webhook.webhook_page, engine, who)


@router.post("/webhook")
async def webhook_url(
    who: SignedInDep, form: CheckedForm, engine: EngineDep, vault: VaultDep, settings: SettingsDep
) -> Response:
    allow_private = settings.webhook_allow_private_networks
    return await run_in_threadpool(webhook.save_url, engine, vault, who, form, allow_private)


@router.post("/webhook/rotate-secret")
async def webhook_secret(
    who: SignedInDep, _: CheckedForm, engine: EngineDep, vault: VaultDep
) -> Response:
    return await run_in_threadpool(webhook.rotate, engine, vault, who)


@router.get("/charts")
async def charts(who: SignedInDep, engine: EngineDep, now: ConsoleNow) -> Response:
    return await run_in_threadpool(last_hour.charts_page, engine, who, now)
