"""Rendering the console: the Jinja2 templates (autoescaped, so everything shown is text),
the headers every page carries, and `ConsoleRoute`, which answers a refusal with a page."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, Template

from api.console import views
from api.errors import DATABASE_DOWN, database_unavailable, validation_error
from api.parsing import JSONRoute
from models.errors import ApiError, ErrorDetail

SIGN_IN_PATH = "/console/sign-in"
# Pages may load only the service's own assets (no inline script or style), and fetch only
# from the service; nothing may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
        "img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_ENV = Environment(
    loader=PackageLoader("api.console", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
)
_ENV.filters.update(views.FILTERS)


class SignInNeeded(Exception):
    """The request has no open session: it is sent to the sign-in page."""


def template(name: str) -> Template:
    """One of the console's templates (the hosted connect pages share them)."""
    return _ENV.get_template(name)


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def error_page(error: ApiError, csrf_token: str | None = None) -> HTMLResponse:
    """The refusal as a page with its status, and its headers (a 503's Retry-After)."""
    page = render(
        "error.html",
        error.status_code,
        error=error,
        csrf_token=csrf_token,
        signed_in=csrf_token is not None,
    )
    page.headers.update(error.headers)
    return page


def no_such_page(error: ApiError) -> HTMLResponse:
    """A console address no page has (a 404), or a method its page does not take (a 405,
    with its Allow), as a page like any other refusal."""
    if error.status_code == 404:
        error = replace(error, details=[ErrorDetail("path", "no such page in the console")])
    return error_page(error)


def _csrf_token(request: Request) -> str | None:
    """The signed-in page's CSRF token, when the session was found before the refusal."""
    token: str | None = getattr(request.state, "csrf_token", None)
    return token


class ConsoleRoute(JSONRoute):
    """A console route (a `JSONRoute`, like every route, though it reads forms): a refusal
    (ApiError, or the database down) is a page with its status and headers, and a request
    without a session goes to sign in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded:
                return see_other(SIGN_IN_PATH)
            except RequestValidationError as exc:
                return error_page(validation_error(exc), _csrf_token(request))
            except ApiError as error:
                return error_page(error, _csrf_token(request))
            except DATABASE_DOWN as exc:
                return error_page(database_unavailable(exc), _csrf_token(request))

        return handle
