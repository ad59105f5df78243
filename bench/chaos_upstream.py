"""An upstream that misbehaves on purpose, for the chaos run: by a seeded draw per request it
answers 200, 429 (with Retry-After), 500 or 503, drops the connection after reading the
request, or stalls (10 s by default: a slow answer at the default timeouts, a read timeout
under shorter ones). It counts every request it receives."""

from __future__ import annotations

import argparse
import asyncio
import random

from aiohttp import web

MIX = [("200", 0.55), ("429", 0.1), ("500", 0.1), ("503", 0.1), ("drop", 0.1), ("stall", 0.05)]


def make_app(seed: int, stall_s: float) -> web.Application:
    rng = random.Random(seed)
    history: dict[str, list[str]] = {}  # "METHOD /path?query" -> what each receipt got

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path == "/_history":
            return web.json_response(history)
        kind = rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        history.setdefault(f"{request.method} {request.path_qs}", []).append(kind)
        if kind == "drop":
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        if kind == "stall":
            await asyncio.sleep(stall_s)
        if kind == "429":
            return web.json_response({"ok": False}, status=429, headers={"Retry-After": "1"})
        if kind in ("500", "503"):
            return web.json_response({"ok": False}, status=int(kind))
        return web.json_response({"ok": True, "len": len(body)})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stall-s", type=float, default=10.0)
    args = parser.parse_args()
    web.run_app(
        make_app(args.seed, args.stall_s),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
