"""The cookies the console and the connect pages give a browser: HttpOnly always, Secure
over https, and over https named with the `__Host-` prefix.

A browser takes a `__Host-` cookie only from a response of this very host, only with
`Secure`, `Path=/` and no `Domain`. Without the prefix, a page on a sibling subdomain (or a
plain-http answer on the way) could plant a cookie of the same name for this host: a
session or pre-session cookie of the attacker's choosing, which would sign the browser in
to the attacker's tenant or bind its forms to a value the attacker knows. Over https the
unprefixed names are not read at all. Over plain http (`passthru dev` on 127.0.0.1) a
browser refuses the prefix, so the cookie keeps its plain name and its narrower path.
"""

from __future__ import annotations

from typing import Literal

from fastapi import Request, Response

HOST_ONLY_PREFIX = "__Host-"
SameSite = Literal["strict", "lax"]


def over_https(request: Request) -> bool:
    """Whether the browser reached us over https (directly, or through a proxy that says so),
    or the operator says it does (PASSTHRU_PUBLIC_URL is https): cookies are then Secure,
    even behind a proxy that does not send X-Forwarded-Proto."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    public = request.app.state.settings.public_origin.startswith("https://")
    return public or forwarded == "https" or request.url.scheme == "https"


def cookie_name(request: Request, name: str) -> str:
    """The name cookie `name` travels under for this request's browser."""
    return HOST_ONLY_PREFIX + name if over_https(request) else name


def read_cookie(request: Request, name: str) -> str | None:
    return request.cookies.get(cookie_name(request, name))


def set_cookie(
    response: Response,
    request: Request,
    name: str,
    value: str,
    *,
    max_age: int,
    path: str,
    samesite: SameSite,
) -> None:
    """Set cookie `name`; `path` holds over plain http only (a `__Host-` cookie's is `/`)."""
    secure = over_https(request)
    response.set_cookie(
        cookie_name(request, name),
        value,
        max_age=max_age,
        path="/" if secure else path,
        httponly=True,
        samesite=samesite,
        secure=secure,
    )


def drop_cookie(
    response: Response, request: Request, name: str, *, path: str, samesite: SameSite
) -> None:
    secure = over_https(request)
    response.delete_cookie(
        cookie_name(request, name),
        path="/" if secure else path,
        httponly=True,
        samesite=samesite,
        secure=secure,
    )
