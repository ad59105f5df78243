"""The web console (`/console`): sign in and out, the Function Calls log, a call's page and
its cancel button. Thin: the work is in `api/console/`."""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from api.call_log import cancel_and_announce
from api.console import screens, signin
from api.console.pages import ConsoleRoute, see_other
from api.console.visitor import CheckedForm, SignedInDep
from api.deps import EngineDep, PublisherDep

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
CallId = Annotated[str, Path(max_length=64)]
_CSS = files("api.console").joinpath("static/console.css").read_bytes()


@router.get("")
async def log(request: Request, who: SignedInDep, engine: EngineDep) -> Response:
    params = dict(request.query_params)
    return await run_in_threadpool(screens.log_page, engine, who, params)


@router.get("/console.css")
def stylesheet() -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "max-age=300"})


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
