"""Every error answers `{error, error_details: [{field, message}]}`, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from api import baseline_headers, transport_security
from api.parsing import BodyRefused
from models.errors import ApiError, ErrorDetail, invalid

log = logging.getLogger("passthru.api")

_HTTP_ERRORS = {
    404: ("not_found", "path", "no such endpoint; see /docs"),
    405: ("method_not_allowed", "method", "this endpoint does not take that method"),
}


# How long a client is asked to wait when the database cannot answer it.
DATABASE_RETRY_S = 5


def refused_by_database(exc: DataError | IntegrityError, where: str) -> ApiError:
    """A backstop: validation keeps every value within its column, so a value the database
    refuses is a bug to fix. Logged with the first line of the driver's message (no row
    values); answered as a 400."""
    why = str(exc.orig).split("\n", 1)[0][:200]
    log.error("the database refused a value on %s: %s: %s", where, type(exc.orig).__name__, why)
    return invalid("body", "a value was refused by the database")


# A database that cannot answer (down, or no connection free): `database_unavailable`'s 503,
# which the console's and the connect pages' routes show as a page.
DATABASE_DOWN = (OperationalError, PoolTimeout)


def database_unavailable(exc: OperationalError | PoolTimeout) -> ApiError:
    """A 503 for a database that is down, or has no connection free (every one of
    PASSTHRU_DB_POOL_SIZE busy past the pool's timeout)."""
    if isinstance(exc, PoolTimeout):
        log.error("database: no connection free in the pool (%s)", exc)
        message = "the database is busy; retry shortly"
    else:
        log.error("database unavailable: %s", exc.orig)
        message = "the database is unavailable; retry shortly"
    return ApiError(
        "unavailable",
        [ErrorDetail("database", message)],
        503,
        {"Retry-After": str(DATABASE_RETRY_S)},
    )


def error_response(err: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = {**err.headers, **(headers or {})}
    if err.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(err.body(), status_code=err.status_code, headers=headers or None)


# A field named in an error echoes at most this much of each step (a key may be huge).
_STEP_CHARS = 100


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    parts = [p if len(p) <= _STEP_CHARS else p[:_STEP_CHARS] + "…" for p in parts]
    return ".".join(parts) or "body"


# What a JSON body that is not an object is, in a message.
_JSON_KINDS: dict[type, str] = {list: "an array", str: "a string", bool: "true or false"}


def not_an_object(body: Any) -> str:
    """Why a body is not the object a route takes: sent as something other than JSON, or
    valid JSON of another kind (an array, a string, a number, null)."""
    if isinstance(body, bytes | bytearray):
        return "the body must be a JSON object sent with Content-Type: application/json"
    kind = "null" if body is None else _JSON_KINDS.get(type(body), "a number")
    return f"the body is valid JSON but {kind}; it must be a JSON object ({{...}})"


def validation_details(errors: Sequence[Any]) -> list[ErrorDetail]:
    details: list[ErrorDetail] = []
    for e in errors:
        message = str(e.get("msg", "is invalid"))
        if e.get("type") == "extra_forbidden":
            message = "is not a known field"
        elif e.get("type") == "model_attributes_type" and tuple(e.get("loc", ())) == ("body",):
            message = not_an_object(e.get("input"))
        details.append(ErrorDetail(_field(tuple(e.get("loc", ()))), message))
    return details


def validation_error(exc: RequestValidationError) -> ApiError:
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            why = (e.get("ctx") or {}).get("error") or e.get("msg", "")
            return ApiError(
                "invalid_json", [ErrorDetail("body", f"the body is not valid JSON: {why}")]
            )
    return ApiError("invalid_params", validation_details(exc.errors()))


# The methods a 405's Allow may list.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route of `app` takes at this request's path: each is tried against
    the routes as a request of that method (the router stops at the first route whose path
    matches, which may take only some of them)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**scope, "method": method})[0] == Match.FULL
            for route in app.router.routes
        )
    ]


# Answers for the paths under a prefix (the console's): an error as a page, not JSON.
PageFor = Callable[[ApiError], Response]


def _page_for(pages: Mapping[str, PageFor], path: str) -> PageFor | None:
    for prefix, page in pages.items():
        if path == prefix or path.startswith(prefix + "/"):
            return page
    return None


def install(app: FastAPI, pages: Mapping[str, PageFor] | None = None) -> None:
    """The error answers; a 404 or 405 under one of `pages`' prefixes is that prefix's page
    (a browser at a console address that no page has is shown a page, not JSON)."""
    pages = dict(pages or {})

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(BodyRefused)
    async def _body_refused(_: Request, exc: BodyRefused) -> JSONResponse:
        return error_response(exc.error)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code, field, message = _HTTP_ERRORS.get(
            exc.status_code, ("http_error", "request", str(exc.detail))
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = allowed_methods(app, request.scope)
            headers["Allow"] = ", ".join(allowed)
            message = f"this endpoint takes {' or '.join(allowed)}, not {request.method}"
        page = _page_for(pages, request.url.path)
        if page is not None and exc.status_code in _HTTP_ERRORS:
            return page(ApiError(code, [ErrorDetail(field, message)], exc.status_code, headers))
        return error_response(
            ApiError(code, [ErrorDetail(field, message)], exc.status_code), headers
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _db_down(_: Request, exc: OperationalError | PoolTimeout) -> JSONResponse:
        return error_response(database_unavailable(exc))

    @app.exception_handler(DataError)
    @app.exception_handler(IntegrityError)
    async def _refused_by_db(request: Request, exc: DataError | IntegrityError) -> JSONResponse:
        return error_response(refused_by_database(exc, f"{request.method} {request.url.path}"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            ApiError(
                "internal_error", [ErrorDetail("request", "unexpected error; it was logged")], 500
            ),
            # answered outside the middlewares that add them to every other answer
            {
                **baseline_headers.HEADERS,
                **transport_security.headers_for(request.app.state.settings.public_origin),
            },
        )
