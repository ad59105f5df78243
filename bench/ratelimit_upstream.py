"""The stand-in upstream of the rate-limit benchmark: `bench.upstream`'s small JSON answer,
plus the arrival time of every request, so the benchmark can see how many requests the
upstream received in any second whoever sent them.

    GET /_history            {path: [arrival times, Unix seconds]} (the query string dropped)
    any other path           the JSON body, after `?delay_ms=N` or --delay-ms

Arrival times are taken with `time.time()` as the request is read, before any delay: the
benchmark runs on one machine, so they compare with the driver's own clock.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web

from bench.upstream import BODY


def make_app(default_delay_ms: int) -> web.Application:
    arrivals: dict[str, list[float]] = {}

    async def history(request: web.Request) -> web.Response:
        return web.json_response(arrivals)

    async def handle(request: web.Request) -> web.Response:
        arrivals.setdefault(request.path, []).append(time.time())
        if request.can_read_body:
            await request.read()
        delay_ms = int(request.query.get("delay_ms", default_delay_ms))
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/_history", history)
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
