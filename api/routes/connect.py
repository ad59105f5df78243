"""`POST /connect-sessions` (a tenant makes a link), `GET|POST /connect/{token}` (the end
user's page and its form), `GET /oauth/callback` (the vendor sends the browser back)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from api.connect.pages import PageRoute
from api.connect.service import Connect
from api.console.forms import parse_form
from api.deps import CurrentTenant, UserIdHeader
from api.parsing import JSONRoute
from api.schemas.common import ErrorOut
from api.schemas.connect import ConnectSessionIn, ConnectSessionOut
from models.errors import invalid

router = APIRouter(tags=["connect"], route_class=JSONRoute)
# The most a connect page's form may send (a key, a password and a few config fields).
MAX_FORM_BYTES = 64 * 1024
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
}


async def connect_of(request: Request) -> Connect:
    connect: Connect = request.app.state.connect
    return connect


ConnectDep = Annotated[Connect, Depends(connect_of)]


@router.post(
    "/connect-sessions",
    status_code=201,
    responses={
        **_ERRORS,
        403: {"model": ErrorOut, "description": "a new account, and the tenant holds its most"},
    },
    summary="A single-use link for an end user to connect an account",
)
def create(
    body: ConnectSessionIn, tenant: CurrentTenant, connect: ConnectDep, user_id: UserIdHeader = None
) -> ConnectSessionOut:
    return connect.create(tenant, body, user_id)


# The end user's pages: a refusal is a page, not JSON.
pages = APIRouter(tags=["connect"], route_class=PageRoute)


@pages.get("/connect/{token}", include_in_schema=False)
def page(token: str, request: Request, connect: ConnectDep) -> Response:
    return connect.show(request, token)


@pages.post("/connect/{token}", include_in_schema=False)
async def submit(token: str, request: Request, connect: ConnectDep) -> Response:
    form = parse_form(await _form_body(request))
    return await run_in_threadpool(connect.submit, request, token, form)


async def _form_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise invalid("body", f"a connect form sends at most {MAX_FORM_BYTES} bytes")
    return bytes(body)


@pages.get("/oauth/callback", include_in_schema=False)
def callback(request: Request, connect: ConnectDep) -> Response:
    return connect.callback(request, request.query_params)


router.include_router(pages)
