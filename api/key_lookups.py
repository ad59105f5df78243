"""Looking an API key up in the database, with lookups of keys nobody has shown valid
bounded.

Anyone can send a request with a made-up key, and each would cost a query and one of the
API's threads. Keys this process has not seen valid are looked up on at most SLOTS threads
of their own, with at most QUEUE requests waiting for one; the next is answered `503` at
once, with `Retry-After`, and costs no query. Keys seen valid (a tenant whose cached entry
expired) go straight to the database, and cached ones never get here, so a flood of
made-up keys neither loads the database nor holds the threads every other request needs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from weakref import WeakKeyDictionary

import anyio
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.prometheus import REQUESTS_REFUSED
from api.tenant_cache import lookup
from models.db.tables import Tenant
from models.errors import ApiError, ErrorDetail
from models.logs import Sometimes

log = logging.getLogger("passthru.api")

# Threads (and database connections) for keys not seen valid, and requests waiting for one.
SLOTS = 4
QUEUE = 64
RETRY_AFTER_S = 1
# The warning about shed lookups is logged at most this often, with how many were shed.
WARN_EVERY_S = 10.0


@dataclass
class _Lane:
    """One event loop's slots, and how many of its requests hold or wait for one."""

    limiter: anyio.CapacityLimiter
    entered: int = 0


class KeyLookups:
    def __init__(
        self,
        engine: Engine,
        *,
        slots: int = SLOTS,
        queue: int = QUEUE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._slots = slots
        self._queue = queue
        # Per event loop: uvicorn runs one per process; a TestClient, one per request.
        self._lanes: WeakKeyDictionary[asyncio.AbstractEventLoop, _Lane] = WeakKeyDictionary()
        self._shed = 0
        self._warnings = Sometimes(WARN_EVERY_S, clock)

    async def known(self, key_hash: str) -> Tenant | None:
        """Look up a key hash that was valid here lately."""
        return await run_in_threadpool(lookup, self._engine, key_hash)

    async def unknown(self, key_hash: str) -> Tenant | None:
        """Look up a key hash this process has not seen valid, on one of the SLOTS threads;
        a 503 ApiError when QUEUE requests wait for one already."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lanes[loop] = _Lane(anyio.CapacityLimiter(self._slots))
        # Counted before the first await: requests read in one pass of the loop all see
        # the count their predecessors left.
        if lane.entered >= self._slots + self._queue:
            raise self._busy()
        lane.entered += 1
        try:
            return await anyio.to_thread.run_sync(
                lookup, self._engine, key_hash, limiter=lane.limiter
            )
        finally:
            lane.entered -= 1

    def _busy(self) -> ApiError:
        REQUESTS_REFUSED.labels("unknown_key_lookups").inc()
        self._shed += 1
        if self._warnings.due():
            log.warning(
                "api keys: %d requests with keys not seen valid were answered 503 (every "
                "lookup slot busy, %d waiting): a client, or a flood, is sending wrong keys",
                self._shed,
                self._queue,
            )
            self._shed = 0
        return ApiError(
            "unavailable",
            [
                ErrorDetail(
                    "Authorization",
                    "too many API keys are being checked at once; retry shortly",
                )
            ],
            503,
            {"Retry-After": str(RETRY_AFTER_S)},
        )
