"""The hosted connect pages, as the routes serve them: the console's autoescaped templates
and security headers (with `form-action` widened to where the form's answer leads), a
browser cookie that binds the form (CSRF) and the OAuth2 state to this browser, and the
fields an API-key or basic-auth app asks for, checked as the API checks them."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.browser_cookies import read_cookie, set_cookie
from api.connect.sessions import LinkRefused, connect_kind
from api.console.csrf import Csrf
from api.console.forms import field
from api.console.pages import SECURITY_HEADERS, template
from api.errors import DATABASE_DOWN, database_unavailable
from api.parsing import JSONRoute
from models.catalog.apps import App
from models.db.tables import ConnectSession
from models.errors import ApiError

BROWSER_COOKIE = "passthru_connect"
_CSP = SECURITY_HEADERS["Content-Security-Policy"]


def csp_source(url: str) -> str:
    """The CSP source that names `url`'s origin: its host in ASCII (IDNA, as it travels),
    with its port when not the default. CSP cannot name an IP v6 host: such a URL (a
    tenant's `http://[::1]` while developing) gets its scheme alone."""
    parsed = httpx.URL(url)
    host = parsed.raw_host.decode("ascii")
    if ":" in host:
        return f"{parsed.scheme}:"
    return f"{parsed.scheme}://{host}" + (f":{parsed.port}" if parsed.port else "")


def headers_to(*origins: str) -> dict[str, str]:
    """The console's headers; the page's forms may also lead to `origins` (a form's
    redirect counts as its target: the vendor's authorize URL, the tenant's redirect_url)."""
    extra = " ".join(sorted(set(origins)))
    csp = _CSP.replace("form-action 'self'", f"form-action 'self' {extra}".rstrip())
    return {**SECURITY_HEADERS, "Content-Security-Policy": csp}


def refused_page(refusal: LinkRefused) -> HTMLResponse:
    html = template("connect_refused.html").render(title=refusal.title, message=refusal.message)
    return HTMLResponse(html, status_code=refusal.status_code, headers=SECURITY_HEADERS)


def error_page(error: ApiError) -> HTMLResponse:
    """A refusal of the end user's form (CSRF, size, a bad field) as a page, not JSON, with
    the refusal's own headers (a 503's Retry-After)."""
    message = "; ".join(detail.message for detail in error.details) or error.error
    title = "Form expired" if error.status_code == 403 else "Cannot connect"
    page = refused_page(LinkRefused(title, message, error.status_code))
    page.headers.update(error.headers)
    return page


class PageRoute(JSONRoute):
    """An end user's page (the link, its form, the vendor's callback): a refusal, or the
    database down, is a page for the end user with its status and headers, never JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as error:
                return error_page(error)
            except DATABASE_DOWN as exc:
                return error_page(database_unavailable(exc))

        return handle


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def browser_of(request: Request) -> str | None:
    value = read_cookie(request, BROWSER_COOKIE)
    return value if value and len(value) <= 64 else None


@dataclass(frozen=True)
class ConfigInput:
    name: str
    label: str
    choices: list[str] | None
    value: str | None
    required: bool
    fixed: bool  # given by the tenant's session: shown, never an input


def config_inputs(app: App, given: Mapping[str, Any] | None) -> list[ConfigInput]:
    """One entry per template field of the app: those the session gave are fixed (the end
    user cannot change them), the others inputs filled in with the field's default."""
    inputs = []
    for name in app.template_fields:
        spec = app.config_field(name)
        fixed = name in (given or {})
        value = (given or {}).get(name, spec.default)
        inputs.append(
            ConfigInput(
                name,
                spec.label,
                list(spec.choices) if spec.choices else None,
                None if value is None else str(value),
                spec.default is None,
                fixed,
            )
        )
    return inputs


@dataclass(frozen=True)
class PageRenderer:
    csrf: Csrf
    ttl_s: float

    def csrf_token(self, browser: str, session: ConnectSession) -> str:
        return self.csrf.token_for("connect", f"{session.id}:{browser}")

    def page(
        self,
        request: Request,
        token: str,
        app: App,
        session: ConnectSession,
        *,
        form_targets: list[str],
        message: str | None = None,
        status_code: int = 200,
    ) -> HTMLResponse:
        """The connect page, setting the browser cookie when the browser has none."""
        browser = browser_of(request) or secrets.token_urlsafe(32)
        html = template("connect.html").render(
            app=app,
            token=token,
            kind=connect_kind(app),
            fields=config_inputs(app, session.connection_config),
            csrf_token=self.csrf_token(browser, session),
            message=message,
        )
        origins = [csp_source(url) for url in form_targets]
        response = HTMLResponse(html, status_code=status_code, headers=headers_to(*origins))
        self._keep(response, request, browser)
        return response

    def _keep(self, response: Response, request: Request, browser: str) -> None:
        # Lax: the browser comes back to /oauth/callback from the vendor, a top-level GET.
        set_cookie(
            response,
            request,
            BROWSER_COOKIE,
            browser,
            max_age=int(self.ttl_s),
            path="/",
            samesite="lax",
        )


def typed_credentials(app: App, form: Mapping[str, str]) -> dict[str, Any]:
    """The credentials object the end user typed: `{api_key}` or `{username, password}`."""
    if connect_kind(app) == "basic":
        return {"username": field(form, "username") or "", "password": form.get("password", "")}
    return {"api_key": field(form, "api_key") or ""}


def typed_config(app: App, form: Mapping[str, str]) -> dict[str, Any] | None:
    config = {
        name: value
        for name in app.template_fields
        if (value := field(form, f"config.{name}", 255)) is not None
    }
    return config or None
