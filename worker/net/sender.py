"""One event loop per worker process, on its own thread, sending every onward request.

Celery's pool threads hand requests over and wait on futures; the loop keeps hundreds of
exchanges in flight over one connection pool, whatever the number of threads.

Requests waiting for room on the wire go interactive first, then tenant by tenant: each
tenant's in arrival order, the tenants in turn, and one tenant's on at most
`tenant_share(max_in_flight)` of the connections, so a tenant whose batch answers slowly
never holds them all while another tenant's requests wait behind its backlog.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from queue import SimpleQueue

import httpx

from models.interactive_due import UNKNOWN_TENANT
from worker.calls.onward import OnwardRequest
from worker.net.send import Failure, MemoryBudget, Outcome, SendPolicy, send
from worker.shares import tenant_share

# Asked right before a request that waited for its slot goes: how many ms its key is still
# paused by the upstream (0: not paused).
PauseGate = Callable[[str], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Deferred:
    """Not sent: the upstream paused the request's key while it waited for its slot, or its
    turn on the wire came too late for its call's lease. Handed back, it runs again."""

    wait_ms: int
    reason: str


Sent = Outcome | Deferred


@dataclass(frozen=True, slots=True)
class _Message:
    """What the requests of one send_all share."""

    results: SimpleQueue[tuple[int, Sent]]
    budget: MemoryBudget | None  # the body bytes they may hold together
    start_by: float | None  # (monotonic) the latest a request may end: its calls' lease


@dataclass(frozen=True, slots=True)
class _Entry:
    message: _Message
    index: int
    request: OnwardRequest
    waited: bool  # it waited for a rate-limit slot: check the pause again before it goes
    tenant_id: str  # whose share it counts against ("" for urgent ones: none)


class Sender:
    def __init__(
        self,
        make_client: Callable[[], httpx.AsyncClient],
        policy: SendPolicy,
        max_in_flight: int = 256,
        make_gate: Callable[[], PauseGate] | None = None,
        message_memory_bytes: int | None = None,
    ) -> None:
        self._make_client = make_client
        self._make_gate = make_gate
        self._gate: PauseGate | None = None
        self.policy = policy
        self.max_in_flight = max_in_flight
        # Body bytes the requests of one send_all (one message) may hold together.
        self.message_memory_bytes = message_memory_bytes
        # Requests waiting for room on the wire: interactive ones go before bulk ones, which
        # wait per tenant, the tenants in turn (the first key goes next).
        self._urgent: deque[_Entry] = deque()
        self._waiting: dict[str, deque[_Entry]] = {}
        self._active = 0
        self.tenant_share = tenant_share(max_in_flight)
        self._active_of: dict[str, int] = {}  # bulk requests on the wire, per tenant
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the event loop and the HTTP pool now rather than on the first request."""
        self._ensure_started()

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = _new_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="passthru-sender", daemon=True
                )
                self._thread.start()

                async def create() -> httpx.AsyncClient:
                    # Some pools need a running loop.
                    self._gate = self._make_gate() if self._make_gate else None
                    return self._make_client()

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

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running event loop (started on first use), for other work of the process
        that must not hold a thread while it waits on the network (webhook deliveries)."""
        return self._ensure_started()

    def submit(self, request: OnwardRequest) -> Future[Outcome]:
        """Start sending `request`; the future resolves to its Outcome."""
        loop = self._ensure_started()
        client = self._client
        assert client is not None
        return asyncio.run_coroutine_threadsafe(send(client, request, self.policy), loop)

    def send_all(
        self,
        requests: Sequence[OnwardRequest],
        delays_s: Sequence[float] | None = None,
        *,
        urgent: bool = False,
        start_by: float | None = None,
        tenants: Sequence[str] | None = None,
    ) -> SimpleQueue[tuple[int, Sent]]:
        """Queue every request with one wake-up of the loop; each `(index, outcome)` arrives on
        the returned queue as soon as it is known. A request with a delay joins the queue
        when it is over (its rate-limit slot) and is checked against pauses then. At most
        `max_in_flight` requests of the process are on the wire at once; the rest wait their
        turn, in order, `urgent` ones (interactive calls) before the others. Waiting requests
        hold no connection. A request whose turn comes too late to end by `start_by`
        (monotonic: its call's lease, less a margin) is not sent: it comes back Deferred,
        to be handed back and run again. `tenants` (each request's, else one unnamed)
        share the room of the non-urgent ones in turn."""
        handed_at = time.monotonic()
        loop = self._ensure_started()
        results: SimpleQueue[tuple[int, Sent]] = SimpleQueue()
        delays = delays_s or [0.0] * len(requests)

        owners = [""] * len(requests) if urgent else (tenants or [UNKNOWN_TENANT] * len(requests))
        budget = MemoryBudget(self.message_memory_bytes) if self.message_memory_bytes else None
        message = _Message(results, budget, start_by)

        def join(entries: list[_Entry]) -> None:
            for entry in entries:
                if urgent:
                    self._urgent.append(entry)
                else:
                    self._waiting.setdefault(entry.tenant_id, deque()).append(entry)
            self._pump()

        def start() -> None:
            join(
                [
                    _Entry(message, i, r, False, owners[i])
                    for i, r in enumerate(requests)
                    if delays[i] <= 0
                ]
            )
            late_by = time.monotonic() - handed_at  # delays count from the hand-over
            for i, r in enumerate(requests):
                if delays[i] > 0:
                    later = [_Entry(message, i, r, True, owners[i])]
                    loop.call_later(max(0.0, delays[i] - late_by), join, later)

        loop.call_soon_threadsafe(start)
        return results

    def _pump(self) -> None:
        """Start waiting requests while there is room (runs on the loop)."""
        loop, client = self._loop, self._client
        assert loop is not None
        assert client is not None
        while self._active < self.max_in_flight:
            entry = self._urgent.popleft() if self._urgent else self._next_waiting()
            if entry is None:
                return
            self._active += 1
            if entry.tenant_id:
                self._active_of[entry.tenant_id] = self._active_of.get(entry.tenant_id, 0) + 1
            loop.create_task(self._one(client, entry))

    def _next_waiting(self) -> _Entry | None:
        """The oldest waiting request of the first tenant in turn below its share, that
        tenant going to the end of the turn; None when every waiting tenant is at it."""
        for tenant_id in list(self._waiting):
            if self._active_of.get(tenant_id, 0) >= self.tenant_share:
                continue
            line = self._waiting.pop(tenant_id)
            entry = line.popleft()
            if line:
                self._waiting[tenant_id] = line
            return entry
        return None

    def _ended(self, entry: _Entry) -> None:
        self._active -= 1
        if entry.tenant_id:
            left = self._active_of.pop(entry.tenant_id) - 1
            if left:
                self._active_of[entry.tenant_id] = left
        self._pump()

    async def _one(self, client: httpx.AsyncClient, entry: _Entry) -> None:
        request, message = entry.request, entry.message
        outcome: Sent
        try:
            paused_ms = 0
            if entry.waited and request.pause_key and self._gate is not None:
                paused_ms = await self._gate(request.pause_key)
            if paused_ms > 0:
                outcome = Deferred(paused_ms, "paused by the upstream")
            elif message.start_by is not None and (
                time.monotonic() + request.timeouts.total_s > message.start_by
            ):
                outcome = Deferred(0, "no connection was free before its lease ran short")
            else:
                outcome = await send(client, request, self.policy, message.budget)
        except Exception as exc:  # a bug, not the network: still answer the caller
            # The class name only: a repr may quote the request and its credentials.
            outcome = Failure("internal_error", type(exc).__name__, True, 0)
        finally:
            self._ended(entry)
        message.results.put((entry.index, outcome))

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
