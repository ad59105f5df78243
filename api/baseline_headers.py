"""Headers every answer carries unless its route set its own.

`X-Content-Type-Options: nosniff`: a browser never guesses a type from a body (a JSON
answer echoing what a tenant sent is never run as HTML or script). `X-Frame-Options: DENY`:
no answer of passthru is meant to be framed. The console's and the connect pages' routes
set both (with a CSP) on their pages; this covers what no page route answers: a redirect
that adds or drops a trailing slash, a 404 or 405 under /console, and every JSON answer.

`AddedHeaders` adds them, and HSTS where the operator wants it (api/transport_security.py).
Starlette answers an unexpected exception outside every middleware, so the handler of those
500s adds them itself (api/errors.py).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}


class AddedHeaders:
    """A pure ASGI middleware adding each of `headers` an HTTP answer lacks."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self._raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {bytes(name).lower() for name, _ in headers}
                message["headers"] = headers + [h for h in self._raw if h[0] not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)
