"""A tiny stand-in third-party API for the `demo` app, so passthru can be tried offline.

`passthru dev` serves it on a free local port and points the demo app's origin
(https://demo-upstream.invalid) at it through PASSTHRU_UPSTREAM_OVERRIDES.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DEMO_ORIGIN = "https://demo-upstream.invalid"
DEMO_API_KEY = "demo-secret-key"  # the demo account's credential; the demo API checks it


def _authorized(request: Request) -> bool:
    return request.headers.get("authorization") == f"Bearer {DEMO_API_KEY}"


async def hello(request: Request) -> Response:
    if not _authorized(request):
        return JSONResponse({"ok": False, "error": "invalid_auth"}, status_code=401)
    name = request.query_params.get("name", "world")
    return JSONResponse({"ok": True, "message": f"hello, {name}", "served_by": "demo upstream"})


async def echo(request: Request) -> Response:
    if not _authorized(request):
        return JSONResponse({"ok": False, "error": "invalid_auth"}, status_code=401)
    raw = await request.body()
    return JSONResponse(
        {
            "ok": True,
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "body": raw.decode("utf-8", errors="replace") or None,
        }
    )


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    delay_ms = int(request.query_params.get("delay_ms", "0"))
    if delay_ms:
        await asyncio.sleep(min(delay_ms, 30_000) / 1000)
    return JSONResponse({"status": code}, status_code=code)


app = Starlette(
    routes=[
        Route("/api/hello", hello),
        Route("/api/echo", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/api/status/{code:int}", status),
    ]
)
