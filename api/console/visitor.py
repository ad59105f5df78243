"""Who is at the browser: the console's collaborators on `app.state`, the session cookie
resolved to its tenant (through the API's own `Authenticator`), and the checked form of a
signed-in POST."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from api import browser_cookies
from api.auth import Authenticator
from api.browser_cookies import read_cookie
from api.console.csrf import FIELD, Csrf
from api.console.forms import parse_form
from api.console.pages import SignInNeeded
from api.console.sessions import SESSION_COOKIE, SESSION_TTL_S, SessionStore
from models.db.tables import Tenant
from models.settings import Settings

# Over plain http, the console's cookies are sent to its own pages only.
COOKIE_PATH = "/console"


@dataclass(frozen=True)
class Console:
    sessions: SessionStore
    csrf: Csrf
    auth: Authenticator

    @classmethod
    def of(cls, settings: Settings, auth: Authenticator) -> Console:
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=3, socket_connect_timeout=3
        )
        return cls(SessionStore(client), Csrf(settings.encryption_key_list[0]), auth)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    browser_cookies.set_cookie(
        response, request, name, value, max_age=SESSION_TTL_S, path=COOKIE_PATH, samesite="strict"
    )


def drop_cookie(response: Response, request: Request, name: str) -> None:
    browser_cookies.drop_cookie(response, request, name, path=COOKIE_PATH, samesite="strict")


@dataclass(frozen=True)
class SignedIn:
    tenant: Tenant
    token: str
    csrf_token: str


async def signed_in(request: Request) -> SignedIn:
    """The request's open session and its tenant; else the browser goes to sign in."""
    console = console_of(request)
    token = read_cookie(request, SESSION_COOKIE)
    key_hash = await run_in_threadpool(console.sessions.key_hash, token)
    tenant = await console.auth.tenant_by_hash(key_hash) if key_hash else None
    if tenant is None or token is None:
        raise SignInNeeded
    csrf_token = console.csrf.token_for("console", token)
    request.state.csrf_token = csrf_token
    return SignedIn(tenant, token, csrf_token)


SignedInDep = Annotated[SignedIn, Depends(signed_in)]


async def checked_form(request: Request, who: SignedInDep) -> dict[str, str]:
    """A signed-in POST's form, once its CSRF token matches the session (else a 403)."""
    form = parse_form(await request.body())
    console_of(request).csrf.check("console", who.token, form.get(FIELD))
    return form


CheckedForm = Annotated[dict[str, str], Depends(checked_form)]
