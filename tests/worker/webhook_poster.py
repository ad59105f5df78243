"""A webhook sender on an event loop of its own, for tests: a `LoopPoster` whose receiver is
an httpx handler."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import httpx

from worker.webhooks.sender import LoopPoster

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


@contextmanager
def loop_poster(
    handler: Handler, concurrency: int, timeout_s: float = 30
) -> Iterator[tuple[LoopPoster, asyncio.AbstractEventLoop]]:
    """A LoopPoster of `concurrency` slots, and the loop a thread runs it on (stopped on
    exit): an event the handler waits on is set with `loop.call_soon_threadsafe`."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        poster = LoopPoster(
            lambda: loop,
            lambda: httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            concurrency=concurrency,
            timeout_s=timeout_s,
        )
        yield poster, loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()
