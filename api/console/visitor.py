"""Who is at the browser: the console's collaborators on `app.state`, the session cookie
resolved to its tenant (through the API's own `Authenticator`), and the checked form of a
signed-in POST."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from api.auth import Authenticator
from api.console.csrf import FIELD, Csrf
from api.console.forms import parse_form
from api.console.pages import SignInNeeded
from api.console.sessions import SESSION_COOKIE, SESSION_TTL_S, SessionStore
from models.db.tables import Tenant
from models.settings import Settings

# The console's cookies are sent to its own pages only.
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


def over_https(request: Request) -> bool:
    """Whether the browser reached us over https (directly, or through a proxy that says so),
    or the operator says it does (PASSTHRU_PUBLIC_URL is https): cookies are then Secure,
    even behind a proxy that does not send X-Forwarded-Proto."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    public = request.app.state.settings.public_origin.startswith("https://")
    return public or forwarded == "https" or request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=SESSION_TTL_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=over_https(request),
    )


def drop_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=over_https(request)
    )


@dataclass(frozen=True)
class SignedIn:
    tenant: Tenant
    token: str
    csrf_token: str


async def signed_in(request: Request) -> SignedIn:
    """The request's open session and its tenant; else the browser goes to sign in."""
    console = console_of(request)
    token = request.cookies.get(SESSION_COOKIE)
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
