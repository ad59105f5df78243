"""Waiting for calls to finish (`Prefer: wait`, `?wait=`) without hammering the database.

Workers publish each finished call id on one Redis channel; each API process holds one
subscription and wakes the matching waiters. The database stays the truth: a waiter
re-reads it when woken, and every POLL_S anyway, in case a message was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from models.keys import CHANNEL_CALL_DONE

log = logging.getLogger("passthru.waiter")

# Longest a waiter trusts pub/sub alone before it looks at the database again.
POLL_S = 1.0


class CallWaiter:
    def __init__(self, redis_url: str) -> None:
        self._redis_url = redis_url
        self._events: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="call-waiter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self._redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL_CALL_DONE)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            for call_id in message["data"].decode().split(","):
                                self._wake(call_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: waiters keep polling; try again soon
                log.warning("call-done subscription lost (%s); retrying in 1 s", exc)
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()

    def _wake(self, call_id: str) -> None:
        for event in self._events.get(call_id, ()):
            event.set()

    async def wait(
        self, call_id: str, timeout_s: float, is_final: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Return True once `is_final()` holds, False if `timeout_s` passes first."""
        event = asyncio.Event()
        self._events.setdefault(call_id, set()).add(event)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while True:
                if await is_final():
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, POLL_S))
                event.clear()
        finally:
            waiters = self._events.get(call_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._events[call_id]
