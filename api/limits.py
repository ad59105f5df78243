"""What every request must satisfy before its body is read, routed or parsed.

A pure ASGI middleware, in this order:
1. The body may be at most PASSTHRU_MAX_REQUEST_BYTES (PASSTHRU_MAX_BATCH_REQUEST_BYTES for
   `POST /function-calls/batch`): a declared Content-Length over the limit is a 413 before
   anything else.
2. The path and the query must hold no NUL character (400).
3. A request with a body (POST, PUT, PATCH; any other method's body is never read) must be
   authenticated before a byte of it is read (401): a client without a valid API key gets
   nothing of its body read or parsed by the app.
4. The body is counted as it arrives and refused the moment it passes the limit (413), so a
   refused body never sits in memory.
A refusal of a body for its size or for the credentials, sent with the body unread, carries
`Connection: close`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.prometheus import REQUESTS_REFUSED
from models.errors import ApiError, ErrorDetail, invalid

# Checks a request's credentials (from its scope) before its body is read; raises ApiError.
Authenticate = Callable[[Scope], Awaitable[None]]

BATCH_PATH = "/function-calls/batch"
# Paths whose routes authenticate their own requests: the console's sessions, and the
# connect pages' forms (the link's token and the browser's CSRF token).
SELF_AUTHENTICATED_PREFIX = ("/console/", "/connect/")
# The methods whose body a route reads; any other body is left unread, as its route does.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
NUL_MESSAGE = "must not contain NUL (\\u0000) characters"


def too_large(limit: int, setting: str) -> ApiError:
    return ApiError(
        "request_too_large",
        [
            ErrorDetail(
                "body",
                f"the request body is larger than {limit} bytes ({setting}); send less, "
                "or split a batch",
            )
        ],
        413,
    )


def nul_problem(path: str, query_string: bytes) -> ApiError | None:
    """A 400 naming the path or the query parameter that holds a NUL, if one does."""
    if "\x00" in path:
        return invalid("path", NUL_MESSAGE)
    if b"%00" not in query_string and b"\x00" not in query_string:
        return None
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if "\x00" in value and "\x00" not in name:
            return invalid(name[:100], NUL_MESSAGE)
    return invalid("query", NUL_MESSAGE)


def _declared_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, counted chunk by chunk; raises _TooLarge once it passes `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class RequestLimits:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_request_bytes: int,
        max_batch_request_bytes: int,
        authenticate: Authenticate | None = None,
    ):
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.max_batch_request_bytes = max_batch_request_bytes
        self.authenticate = authenticate

    def limit_for(self, scope: Scope) -> tuple[int, str]:
        if scope["method"] == "POST" and scope["path"] == BATCH_PATH:
            return self.max_batch_request_bytes, "PASSTHRU_MAX_BATCH_REQUEST_BYTES"
        return self.max_request_bytes, "PASSTHRU_MAX_REQUEST_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit_for(scope)
        headers = Headers(scope=scope)
        declared = _declared_length(headers)
        if declared is not None and declared > limit:
            await _refuse_too_large(limit, setting, scope, receive, send)
            return
        problem = nul_problem(scope["path"], scope.get("query_string", b""))
        if problem is not None:
            await error_response(problem)(scope, receive, send)
            return
        if scope["method"] not in BODY_METHODS or (
            declared == 0 or (declared is None and "transfer-encoding" not in headers)
        ):
            await self.app(scope, receive, send)  # no body, or one no route reads
            return
        if self.authenticate is not None and not scope["path"].startswith(
            SELF_AUTHENTICATED_PREFIX
        ):
            try:
                await self.authenticate(scope)
            except ApiError as error:
                await _refuse(error, scope, receive, send)
                return
        try:
            body = await _read_body(receive, limit)
        except _TooLarge:
            await _refuse_too_large(limit, setting, scope, receive, send)
            return
        except _Disconnected:
            return  # the client left; nobody to answer
        await self.app(scope, _replay(body, receive), send)


async def _refuse_too_large(
    limit: int, setting: str, scope: Scope, receive: Receive, send: Send
) -> None:
    REQUESTS_REFUSED.labels("request_too_large").inc()
    await _refuse(too_large(limit, setting), scope, receive, send)


async def _refuse(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer `error` with the body unread: the connection cannot be reused."""
    await error_response(error, {"Connection": "close"})(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, as one message; then the server's own (a disconnect)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
