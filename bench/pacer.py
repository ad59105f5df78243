"""The open-loop client that (c) and (e) measure with: calls sent at a steady rate from one
asyncio event loop (aiohttp), each at its scheduled time whatever the earlier calls are doing.

One event loop rather than a pool of blocking clients: on a 2-core machine the threads' CPU
and the GIL held a 100-thread client to ~60 calls/s and added their own waits to the latencies
it measured. Each call is timed from the moment it is sent until its body has been read; how
late it went out after its scheduled time is kept apart, so a client falling behind shows as
lateness and a lower send rate, not as latency.

The direct calls (to the stand-in upstream) and the passthru calls go through the same
machinery, each kind on its own session and connection pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from bench import scenarios as sc
from bench.stack import BENCH_ORIGIN, Stack

WARM_UP_S = 5.0
# Calls unanswered at once, and connections per kind of call. A call due while this many wait
# for answers waits for one of them and counts as late; the schedule goes on regardless. Above
# a tenant's long polls per API process (PASSTHRU_TENANT_MAX_WAITS, 100 by default): calls past
# those are passthru's 429s, counted as not 200, not held back by the client.
MAX_IN_FLIGHT = 500
TIMEOUT = aiohttp.ClientTimeout(total=30)
# Answers a call may have that mean it never got one (timeouts, refused or dropped connections).
NO_ANSWER = (aiohttp.ClientError, TimeoutError, OSError)


@dataclass(frozen=True)
class Sample:
    """One call as the client saw it."""

    ms: float  # send to answer read, on the monotonic clock
    status: int  # 0: no answer (timeout, connection error) or a 200 without a call id
    sent: float  # time.time() just before sending
    received: float  # time.time() once the answer was read
    call_id: str | None = None  # the 200 answer's `id`, for passthru calls
    late_ms: float = 0.0  # how long after its scheduled time the call was sent


Send = Callable[[float], Awaitable[Sample]]  # sends one call scheduled at a perf_counter time


async def paced(rate: float, more: Callable[[int], bool], send: Send) -> list[Sample]:
    """Call send at a steady rate (open loop): call i at start + i/rate, if more(i) still says
    so, as a task of its own that nothing waits for before sending the next; return every
    call's sample once all have answered."""
    samples: list[Sample] = []
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(scheduled: float) -> None:
        async with slots:
            samples.append(await send(scheduled))

    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    i = 0
    while True:
        scheduled = start + i / rate
        # sleep(0) when already due: the calls fired so far still get to go out.
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        if not more(i):
            break
        tasks.append(asyncio.create_task(one(scheduled)))
        i += 1
    await asyncio.gather(*tasks)
    return samples


def calls(n: int) -> Callable[[int], bool]:
    """`more` for a fixed number of calls."""
    return lambda i: i < n


def _session(**kwargs: Any) -> aiohttp.ClientSession:
    """A session with its own pool of up to MAX_IN_FLIGHT connections; only inside a running
    event loop."""
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT, limit_per_host=0)
    return aiohttp.ClientSession(connector=connector, timeout=TIMEOUT, **kwargs)


class Clients:
    """The kinds of call: straight to the stand-in upstream, through passthru with
    `Prefer: wait=10`, and, given its URL, through the design's floor (bench/floor.py). Made
    and used inside one event loop (`async with`), so the connections the warm-up opens serve
    the measured calls."""

    def __init__(self, s: Stack, key: str, floor_url: str | None = None) -> None:
        self.upstream = f"{s.upstream_url}/items"
        self.api = f"{s.api_url}/bench-passthrough-request"
        self.floor_url = floor_url
        self.body = orjson.dumps({"method": "GET", "url": f"{BENCH_ORIGIN}/items"})
        self.direct_session = _session(headers={"Authorization": "Bearer x"})
        self.floor_session = _session(headers={"Content-Type": "application/json"})
        self.api_session = _session(
            headers={
                "Authorization": f"Bearer {key}",
                "X-User-ID": sc.USER,
                "Prefer": "wait=10",
                "Content-Type": "application/json",
            }
        )

    async def direct(self, scheduled: float) -> Sample:
        return await _timed(self.direct_session, "GET", self.upstream, scheduled)

    async def through(self, scheduled: float) -> Sample:
        return await _timed(self.api_session, "POST", self.api, scheduled, self.body)

    async def floor(self, scheduled: float) -> Sample:
        assert self.floor_url is not None
        return await _timed(self.floor_session, "POST", self.floor_url, scheduled, self.body)

    async def warm_up(self, rate: float) -> None:
        """Each kind of call for WARM_UP_S, not counted: new connections, caches."""
        sc.say(f"warm-up: {WARM_UP_S:g} s of each kind of call at {rate:g}/s, not counted")
        await paced(rate, calls(int(rate * WARM_UP_S)), self.direct)
        await paced(rate, calls(int(rate * WARM_UP_S)), self.through)
        if self.floor_url is not None:
            await paced(rate, calls(int(rate * WARM_UP_S)), self.floor)

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(
        self, *exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        await self.direct_session.close()
        await self.api_session.close()
        await self.floor_session.close()


async def _timed(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    scheduled: float,
    body: bytes | None = None,
) -> Sample:
    """Send one call; keep its latency (send to body read), status, wall-clock times, how late
    it went out and, for a passthru call (one with a body) answered 200, its call id (read once
    the time is taken; a 200 without one counts as no answer)."""
    sent, started = time.time(), time.perf_counter()
    late_ms = round((started - scheduled) * 1000, 2)
    try:
        async with session.request(method, url, data=body) as r:
            status, answer = r.status, await r.read()
    except NO_ANSWER:
        status, answer = 0, b""
    ms, received = (time.perf_counter() - started) * 1000, time.time()
    call_id = None
    if body is not None and status == 200:
        try:
            call_id = str(orjson.loads(answer)["id"])
        except (ValueError, KeyError, TypeError):
            status = 0
    return Sample(ms, status, sent, received, call_id, late_ms)
