"""A fast stand-in upstream for benchmarks, in its own process (aiohttp's server).

Every path answers a small JSON body; `?delay_ms=N` (or --delay-ms) delays the answer.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

BODY = b'{"ok":true,"items":[{"id":1,"name":"bench"}]}'


def make_app(default_delay_ms: int) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        if request.can_read_body:
            await request.read()
        delay_ms = int(request.query.get("delay_ms", default_delay_ms))
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()
    web.run_app(
        make_app(args.delay_ms),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
