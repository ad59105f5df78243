"""One event loop per worker process, on its own thread, sending every onward request.

Celery's pool threads hand requests over and wait on futures; the loop keeps hundreds of
exchanges in flight over one connection pool, whatever the number of threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from queue import SimpleQueue

import httpx

from worker.onward import OnwardRequest
from worker.send import Failure, Outcome, SendPolicy, send


class Sender:
    def __init__(
        self,
        make_client: Callable[[], httpx.AsyncClient],
        policy: SendPolicy,
        max_in_flight: int = 256,
    ) -> None:
        self._make_client = make_client
        self.policy = policy
        self.max_in_flight = max_in_flight
        self._waiting: deque[tuple[SimpleQueue[tuple[int, Outcome]], int, OnwardRequest]] = deque()
        self._active = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = _new_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="passthru-sender", daemon=True
                )
                self._thread.start()

                async def create() -> httpx.AsyncClient:
                    return self._make_client()  # some pools need a running loop

                try:
                    self._client = asyncio.run_coroutine_threadsafe(create(), loop).result(30)
                except BaseException:
                    loop.call_soon_threadsafe(loop.stop)
                    self._thread.join(10)
                    self._thread = None
                    loop.close()
                    raise
                self._loop = loop
            return self._loop

    def submit(self, request: OnwardRequest) -> Future[Outcome]:
        """Start sending `request`; the future resolves to its Outcome."""
        loop = self._ensure_started()
        client = self._client
        assert client is not None
        return asyncio.run_coroutine_threadsafe(send(client, request, self.policy), loop)

    def send_all(self, requests: Sequence[OnwardRequest]) -> SimpleQueue[tuple[int, Outcome]]:
        """Queue every request with one wake-up of the loop; each `(index, outcome)` arrives on
        the returned queue as soon as it is known. At most `max_in_flight` requests of the
        process are on the wire at once; the rest wait their turn, in order."""
        loop = self._ensure_started()
        results: SimpleQueue[tuple[int, Outcome]] = SimpleQueue()

        def start() -> None:
            self._waiting.extend((results, i, r) for i, r in enumerate(requests))
            self._pump()

        loop.call_soon_threadsafe(start)
        return results

    def _pump(self) -> None:
        """Start waiting requests while there is room (runs on the loop)."""
        loop, client = self._loop, self._client
        assert loop is not None
        assert client is not None
        while self._waiting and self._active < self.max_in_flight:
            results, index, request = self._waiting.popleft()
            self._active += 1
            loop.create_task(self._one(client, results, index, request))

    async def _one(
        self,
        client: httpx.AsyncClient,
        results: SimpleQueue[tuple[int, Outcome]],
        index: int,
        request: OnwardRequest,
    ) -> None:
        try:
            outcome = await send(client, request, self.policy)
        except Exception as exc:  # a bug, not the network: still answer the caller
            outcome = Failure("internal_error", repr(exc), True, 0)
        finally:
            self._active -= 1
            self._pump()
        results.put((index, outcome))

    def close(self) -> None:
        with self._lock:
            loop, client = self._loop, self._client
            self._loop = self._client = None
        if loop is None:
            return
        if client is not None:
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it comes with uvicorn[standard]): a cheaper loop per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
