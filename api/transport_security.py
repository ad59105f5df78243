"""HTTP Strict Transport Security, when the operator says passthru is reached over https.

With `PASSTHRU_PUBLIC_URL` on https, every answer carries `Strict-Transport-Security:
max-age=31536000`: a browser that has seen it once goes to this host over https only for a
year, so nobody on its network can serve it a plain-http page of this host (and plant or
read a cookie there). `includeSubDomains` is left out: the operator's other hosts are not
passthru's to bind. A browser ignores the header on a plain-http answer.

Starlette answers an unexpected exception outside every middleware, so the handler of those
500s adds `headers_for(public_origin)` itself (api/errors.py).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = (b"strict-transport-security", b"max-age=31536000")


def wanted(public_origin: str) -> bool:
    return public_origin.startswith("https://")


def headers_for(public_origin: str) -> dict[str, str]:
    """HEADER as a response's headers, when `public_origin` is https; else none."""
    return {HEADER[0].decode(): HEADER[1].decode()} if wanted(public_origin) else {}


class StrictTransportSecurity:
    """A pure ASGI middleware adding HEADER to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), HEADER]
            await send(message)

        await self.app(scope, receive, send_with_header)
