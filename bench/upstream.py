"""A fast stand-in upstream for benchmarks, in its own process (aiohttp's server).

Every path answers a small JSON body; `?delay_ms=N` (or --delay-ms) delays the answer.
With --record it also keeps the arrival time of every request (`time.time()` as the
request is read, before any delay) and serves them at `GET /_history` as
`{path: [Unix seconds]}`: the rate-limit benchmark counts what the upstream received in
any second, whoever sent it.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web

BODY = b'{"ok":true,"items":[{"id":1,"name":"bench"}]}'


def make_app(default_delay_ms: int, record: bool = False) -> web.Application:
    arrivals: dict[str, list[float]] = {}

    async def history(_: web.Request) -> web.Response:
        return web.json_response(arrivals)

    async def handle(request: web.Request) -> web.Response:
        if record:
            arrivals.setdefault(request.path, []).append(time.time())
        if request.can_read_body:
            await request.read()
        delay_ms = int(request.query.get("delay_ms", default_delay_ms))
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    if record:
        app.router.add_get("/_history", history)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--record", action="store_true", help="serve arrival times at /_history")
    args = parser.parse_args()
    web.run_app(
        make_app(args.delay_ms, args.record),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
