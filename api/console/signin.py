"""Signing in with an API key, and out. The key is checked as the API checks it (its
SHA-256, through `Authenticator`) and is never kept: the session holds its hash."""

from __future__ import annotations

import re

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from api.browser_cookies import read_cookie
from api.console.csrf import FIELD
from api.console.forms import field, parse_form
from api.console.pages import SIGN_IN_PATH, render, see_other
from api.console.sessions import PRESESSION_COOKIE, SESSION_COOKIE, new_token
from api.console.visitor import SignedIn, console_of, drop_cookie, set_cookie
from models.crypto.secrets import hash_api_key

LOG_PATH = "/console"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # what sessions.new_token makes
WRONG_KEY = "That API key is not valid. Check it and try again."
NO_KEY = "Enter your API key."


async def sign_in_page(request: Request) -> Response:
    """The form, bound by its CSRF token to a pre-session cookie of this browser."""
    held = read_cookie(request, PRESESSION_COOKIE)
    # Only a token this server made binds the form: a value planted in the cookie is replaced.
    pre = held if held and _TOKEN.fullmatch(held) else new_token()
    response = _form(request, pre, message=None, status_code=200)
    if pre != held:
        set_cookie(response, request, PRESESSION_COOKIE, pre)
    return response


async def sign_in(request: Request) -> Response:
    console = console_of(request)
    pre = read_cookie(request, PRESESSION_COOKIE)
    form = parse_form(await request.body())
    console.csrf.check("sign-in", pre, form.get(FIELD))
    assert pre is not None  # the check refuses a request without it
    key = field(form, "api_key")
    if key is None:
        return _form(request, pre, NO_KEY, 400)
    key_hash = hash_api_key(key)
    if await console.auth.tenant_by_hash(key_hash) is None:
        return _form(request, pre, WRONG_KEY, 401)
    token = await run_in_threadpool(console.sessions.open, key_hash)
    response = see_other(LOG_PATH)
    set_cookie(response, request, SESSION_COOKIE, token)
    drop_cookie(response, request, PRESESSION_COOKIE)
    return response


async def sign_out(request: Request, who: SignedIn) -> Response:
    await run_in_threadpool(console_of(request).sessions.close, who.token)
    response = see_other(SIGN_IN_PATH)
    drop_cookie(response, request, SESSION_COOKIE)
    return response


def _form(request: Request, pre: str, message: str | None, status_code: int) -> Response:
    token = console_of(request).csrf.token_for("sign-in", pre)
    return render("sign_in.html", status_code, csrf_token=token, message=message, signed_in=False)
