"""A submission's own headers, `X-User-ID`, `Prefer` and `Idempotency-Key`, read in one
dependency.

FastAPI validates each declared header parameter on its own, through pydantic, on every
request. For these three that was about 0.15 ms of the event loop's CPU per submission
here, a tenth of it. They are read straight from the request instead, with the same
limits and the same 400, and `DOCUMENTED` names them in the OpenAPI document as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import Headers

from api.schemas.common import IDEMPOTENCY_KEY_CHARS, USER_ID_CHARS
from models.errors import invalid
from models.settings import MAX_WAIT_S

_PREFER = (
    f"`wait=N` (0 <= N <= {MAX_WAIT_S:g}): wait up to N s and answer 200 with the result if "
    "the call ended; `respond-async`: answer 202 at once. Without either, the operator's "
    "PASSTHRU_DEFAULT_WAIT_S (0: answer 202 at once)"
)


@dataclass(frozen=True, slots=True)
class SubmitHeaders:
    user_id: str | None
    prefer: str | None
    idempotency_key: str | None


def _limited(headers: Headers, name: str, limit: int) -> str | None:
    value = headers.get(name)
    if value is not None and len(value) > limit:
        raise invalid(name, f"String should have at most {limit} characters")
    return value


def as_utf8(value: str) -> str:
    """A header's text as the client wrote it: HTTP hands header bytes over as Latin-1, so
    `josé` sent in UTF-8 arrives as `josÃ©`, an id no body would name. ValueError when the
    bytes are not UTF-8."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise ValueError("must be UTF-8") from None


def user_id_header(headers: Headers) -> str | None:
    """`X-User-ID` as written, within its limit, or a 400 naming it."""
    value = _limited(headers, "X-User-ID", USER_ID_CHARS)
    try:
        return None if value is None else as_utf8(value)
    except ValueError as exc:
        raise invalid("X-User-ID", str(exc)) from None


async def submit_headers(request: Request) -> SubmitHeaders:
    """The three headers as sent (the first of each, but `Prefer`, whose fields are one
    list), or a 400 naming one past its limit."""
    headers = request.headers
    return SubmitHeaders(
        user_id=user_id_header(headers),
        # One list, however many Prefer headers carry it (RFC 7240, as RFC 9110 joins any
        # field sent more than once)
        prefer=", ".join(headers.getlist("Prefer")) or None,
        idempotency_key=_limited(headers, "Idempotency-Key", IDEMPOTENCY_KEY_CHARS),
    )


def _header(name: str, max_length: int | None = None, description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if max_length is not None:
        schema["maxLength"] = max_length
    doc: dict[str, Any] = {"name": name, "in": "header", "required": False, "schema": schema}
    if description:
        doc["description"] = description
    return doc


# The route's `openapi_extra`: the headers as FastAPI would have documented them.
DOCUMENTED: dict[str, Any] = {
    "parameters": [
        _header("X-User-ID", USER_ID_CHARS, "the end user the call runs as"),
        _header("Prefer", description=_PREFER),
        _header("Idempotency-Key", IDEMPOTENCY_KEY_CHARS, "the same key, the same call"),
    ]
}

SubmitHeadersDep = Annotated[SubmitHeaders, Depends(submit_headers)]
