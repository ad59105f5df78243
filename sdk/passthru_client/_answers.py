"""Reading an answer whatever sent it: at most a cap of bytes, counted once decoded."""

from __future__ import annotations

import httpx

from passthru_client._errors import PassthruError
from passthru_client._types import ErrorDetail

# The most of one answer the SDK reads (decoded), whatever the server sends: a call's output
# is at most the server's PASSTHRU_MAX_RESPONSE_BYTES (10 MiB by default), which JSON's
# escapes may make up to six times longer.
DEFAULT_MAX_RESPONSE_BYTES = 128 * 1024 * 1024


def positive_bytes(value: int) -> int:
    """`max_response_bytes`, checked: a whole number above zero."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"max_response_bytes must be a whole number above 0, not {value!r}")
    return value


def _too_large(response: httpx.Response, cap: int) -> PassthruError:
    request = response.request
    return PassthruError(
        "response_too_large",
        [
            ErrorDetail(
                "body",
                f"the answer to {request.method} {request.url.path} is over {cap:,} bytes: "
                "not read further (raise the client's max_response_bytes if this is expected)",
            )
        ],
        response.status_code,
        headers=response.headers,
    )


def _announced(response: httpx.Response) -> int:
    """The body's length as announced, when it is the length once read (not encoded)."""
    if "content-encoding" in response.headers:
        return 0
    try:
        return int(response.headers.get("content-length", "0"))
    except ValueError:
        return 0


def _complete(response: httpx.Response, body: bytes) -> httpx.Response:
    """The answer with its body read (decoded: no Content-Encoding left to undo)."""
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request
    )


def read_capped(client: httpx.Client, request: httpx.Request, cap: int) -> httpx.Response:
    """Send `request` and read at most `cap` bytes of its (decoded) answer."""
    response = client.send(request, stream=True)
    try:
        if _announced(response) > cap:
            raise _too_large(response, cap)
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > cap:
                raise _too_large(response, cap)
    finally:
        response.close()
    return _complete(response, bytes(body))


async def aread_capped(
    client: httpx.AsyncClient, request: httpx.Request, cap: int
) -> httpx.Response:
    """`read_capped` for an async client."""
    response = await client.send(request, stream=True)
    try:
        if _announced(response) > cap:
            raise _too_large(response, cap)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > cap:
                raise _too_large(response, cap)
    finally:
        await response.aclose()
    return _complete(response, bytes(body))
