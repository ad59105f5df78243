"""Waiting for calls to finish (`Prefer: wait`, `?wait=`) without hammering the database.

Workers announce finished calls on two Redis channels (models/calls/notices.py): bare ids,
and the results of interactive calls. Each API process holds one subscription and wakes the
matching waiters. A submission registers its watch before its call is published, so a
result announced at once is not missed, and answers with the result the notice carries;
other waiters read the database when woken, and every waiter reads it every POLL_S anyway,
in case a notice was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from models.calls.notices import parse_done, parse_result_notice
from models.keys import CHANNEL_CALL_DONE, CHANNEL_CALL_RESULT

log = logging.getLogger("passthru.waiter")

# Longest a waiter trusts pub/sub alone before it looks at the database again.
POLL_S = 1.0
# At shutdown the subscription is cancelled again this often, this long apart, at most:
# closing a redis-py pubsub connection can wait forever for its socket to close (redis-py
# #3941), and each cancellation ends such a wait.
STOP_TRIES = 5
STOP_WAIT_S = 1.0
_RESULT_CHANNEL = CHANNEL_CALL_RESULT.encode()


@dataclass(eq=False)
class Watch:
    """One waiter's registration for a call: woken by the call's notices; `result` is the
    call's result (its JSON, as the API answers it) once a notice brought it."""

    call_id: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    result: bytes | None = None


class CallWaiter:
    def __init__(self, redis_url: str) -> None:
        self._redis_url = redis_url
        self._watches: dict[str, set[Watch]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="call-waiter")

    async def stop(self) -> None:
        """End the subscription, within STOP_TRIES times STOP_WAIT_S whatever its connection
        does: a shutdown never hangs on it."""
        task, self._task = self._task, None
        if task is None:
            return
        for _ in range(STOP_TRIES):
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_WAIT_S)
            if done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("call-done subscription ended with %r", task.exception())
                return
        log.warning("call-done subscription did not end at shutdown; left behind")

    async def _listen(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self._redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL_CALL_DONE, CHANNEL_CALL_RESULT)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.on_message(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: waiters keep polling; try again soon
                log.warning("call-done subscription lost (%s); retrying in 1 s", exc)
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()

    def on_message(self, channel: bytes, data: bytes) -> None:
        """A message of the subscription: wake the waiters of the calls it names."""
        if channel == _RESULT_CHANNEL:
            call_id, result = parse_result_notice(data)
            self._wake(call_id, result)
        else:
            for call_id in parse_done(data):
                self._wake(call_id, None)

    def _wake(self, call_id: str, result: bytes | None) -> None:
        for watch in self._watches.get(call_id, ()):
            if result is not None:
                watch.result = result
            watch.event.set()

    @contextlib.contextmanager
    def watch(self, call_id: str) -> Iterator[Watch]:
        """Be woken by the call's notices while the block runs."""
        watch = Watch(call_id)
        self._watches.setdefault(call_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(call_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[call_id]

    async def wait(
        self,
        call_id: str,
        timeout_s: float,
        is_final: Callable[[], Awaitable[bool]],
        watch: Watch | None = None,
    ) -> bool:
        """True once the call is final, False if `timeout_s` passes first. Without a
        `watch`, final means `is_final()` holds: it is asked at once (the call may have
        ended already), when a notice comes and every POLL_S. With a `watch`, registered
        before the call was published, a notice that brought the result (then in
        `watch.result`) is final too, and `is_final()` is asked only when a notice without
        one comes and every POLL_S."""
        if watch is None:
            with self.watch(call_id) as own:
                return await self._until_final(own, timeout_s, is_final, submitted=False)
        return await self._until_final(watch, timeout_s, is_final, submitted=True)

    @staticmethod
    async def _until_final(
        watch: Watch,
        timeout_s: float,
        is_final: Callable[[], Awaitable[bool]],
        *,
        submitted: bool,
    ) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if not submitted and await is_final():
            return True
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.event.wait(), min(remaining, POLL_S))
            if submitted and watch.result is not None:
                return True
            watch.event.clear()
            if await is_final():
                return True
