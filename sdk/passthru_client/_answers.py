"""Reading an answer whatever sent it: at most a cap of bytes, counted once decoded."""

from __future__ import annotations

import zlib

import httpx

from passthru_client._errors import PassthruError
from passthru_client._types import ErrorDetail

# The most of one answer the SDK reads (decoded), whatever the server sends: a call's output
# is at most the server's PASSTHRU_MAX_RESPONSE_BYTES (10 MiB by default), which JSON's
# escapes may make up to six times longer.
DEFAULT_MAX_RESPONSE_BYTES = 128 * 1024 * 1024
# What the SDK asks answers to be compressed with: what `Body` decodes within the cap.
ACCEPT_ENCODING = "gzip, deflate"


def positive_bytes(value: int) -> int:
    """`max_response_bytes`, checked: a whole number above zero."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"max_response_bytes must be a whole number above 0, not {value!r}")
    return value


def _too_large(response: httpx.Response, cap: int) -> PassthruError:
    why = (
        f"is over {cap:,} bytes: not read further (raise the client's max_response_bytes if "
        "this is expected)"
    )
    return _refused(response, "response_too_large", why)


def _announced(response: httpx.Response) -> int:
    """The body's length as announced, when it is the length once read (not encoded)."""
    if "content-encoding" in response.headers:
        return 0
    try:
        return int(response.headers.get("content-length", "0"))
    except ValueError:
        return 0


def _refused(response: httpx.Response, error: str, why: str) -> PassthruError:
    """The SDK's own refusal of `response`: `error`, and what is wrong with it (`why`)."""
    request = response.request
    return PassthruError(
        error,
        [ErrorDetail("body", f"the answer to {request.method} {request.url.path} {why}")],
        response.status_code,
        headers=response.headers,
    )


class Body:
    """An answer's body as it arrives, decoded (gzip or deflate, as ACCEPT_ENCODING asks)
    by zlib with a bound on each step's output, so no piece of input can make more than
    the cap of output: httpx's own decoders undo a whole network read at once, which
    a compressed bomb turns into gigabytes."""

    def __init__(self, response: httpx.Response, cap: int) -> None:
        self._response = response
        self._cap = cap
        self._body = bytearray()
        self._encoding = encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding in ("", "identity"):
            self._inflate = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            # 47: a gzip or zlib header, found from the stream's first bytes.
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)
        else:
            why = f"came in {encoding!r}, an encoding not asked for"
            raise _refused(response, "invalid_response", why)
        if _announced(response) > cap:
            raise _too_large(response, cap)

    def add(self, raw: bytes) -> None:
        if self._inflate is None:
            self._body += raw
        else:
            room = self._cap + 1 - len(self._body)  # one byte over is enough to know
            try:
                self._body += self._inflate.decompress(raw, room)
            except zlib.error:
                why = f"is not the {self._encoding} it says it is"
                raise _refused(self._response, "invalid_response", why) from None
        if len(self._body) > self._cap:
            raise _too_large(self._response, self._cap)

    def held(self, content: bytes) -> None:
        """A body httpx holds whole already, decoded (an answer made in memory, as by
        `httpx.MockTransport`): only its length is checked."""
        self._inflate = None
        self._body = bytearray()
        self.add(content)

    def read(self) -> httpx.Response:
        """The answer with its body read (decoded: no Content-Encoding left to undo)."""
        response = self._response
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=bytes(self._body),
            request=response.request,
        )


def read_capped(client: httpx.Client, request: httpx.Request, cap: int) -> httpx.Response:
    """Send `request` and read at most `cap` bytes of its (decoded) answer."""
    response = client.send(request, stream=True)
    try:
        body = Body(response, cap)
        if response.is_stream_consumed:
            body.held(response.content)
        else:
            for raw in response.iter_raw():
                body.add(raw)
    finally:
        response.close()
    return body.read()


async def aread_capped(
    client: httpx.AsyncClient, request: httpx.Request, cap: int
) -> httpx.Response:
    """`read_capped` for an async client."""
    response = await client.send(request, stream=True)
    try:
        body = Body(response, cap)
        if response.is_stream_consumed:
            body.held(response.content)
        else:
            async for raw in response.aiter_raw():
                body.add(raw)
    finally:
        await response.aclose()
    return body.read()
