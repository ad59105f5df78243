"""The Sender: one event loop thread per process, many onward requests in flight at once."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import pytest

from worker.calls.auth import HeaderAuth
from worker.calls.onward import OnwardRequest
from worker.calls.timeouts import Timeouts
from worker.net.egress import EgressPolicy
from worker.net.send import Answer, Outcome, SendPolicy
from worker.net.sender import Deferred, Sender

POLICY = SendPolicy(
    overrides={}, egress=EgressPolicy(allow_private=True), max_response_bytes=10_000
)
WAIT_S = 30  # only a guard so that a broken Sender fails instead of hanging the suite

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def _req(n: int = 0) -> OnwardRequest:
    return OnwardRequest(
        method="GET",
        url=f"https://api.example.com/v1/items/{n}",
        headers={"Accept": "application/json"},
        content=None,
        allowed_hosts=("api.example.com",),
        auth=HeaderAuth("Authorization", "Bearer t"),
        timeouts=Timeouts(connect_s=10.0, read_s=30.0, total_s=30.0),
    )


class Clients:
    """A client factory that keeps what it made, to check how many and that they closed."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.made: list[httpx.AsyncClient] = []
        self.threads: list[threading.Thread] = []

    async def _answer(self, request: httpx.Request) -> httpx.Response:
        response = self.handler(request)
        return response if isinstance(response, httpx.Response) else await response

    def __call__(self) -> httpx.AsyncClient:
        self.threads.append(threading.current_thread())
        client = httpx.AsyncClient(transport=httpx.MockTransport(self._answer))
        self.made.append(client)
        return client


def _sender_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "passthru-sender"]


def _collect_resource_warnings() -> list[str]:
    """Collect garbage now; return the ResourceWarnings it raised instead of raising them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.fixture
def no_sender_threads_left() -> Iterator[None]:
    before = set(_sender_threads())
    yield
    for thread in set(_sender_threads()) - before:
        thread.join(WAIT_S)
        assert not thread.is_alive(), "a sender thread outlived its Sender"


def test_submit_returns_the_outcome(no_sender_threads_left: None) -> None:
    # Given a sender on an upstream that echoes the path
    clients = Clients(lambda r: httpx.Response(200, text=r.url.path))
    sender = Sender(clients, POLICY)
    try:
        # When a request is submitted
        outcome = sender.submit(_req(7)).result(WAIT_S)
    finally:
        sender.close()
    # Then the future resolves to the answer
    assert isinstance(outcome, Answer)
    assert outcome.body == b"/v1/items/7"
    # and the client was made on the sender's own thread, not the caller's
    assert len(clients.made) == 1
    assert clients.threads[0].name == "passthru-sender"


def test_many_requests_are_in_flight_at_once(no_sender_threads_left: None) -> None:
    # Given an upstream that answers none until all N requests have arrived
    n = 25
    arrived: list[str] = []
    all_arrived = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        arrived.append(request.url.path)
        if len(arrived) == n:
            all_arrived.set()
        try:
            await asyncio.wait_for(all_arrived.wait(), WAIT_S)
        except TimeoutError:
            return httpx.Response(504, text=f"only {len(arrived)} in flight")
        return httpx.Response(200, text=request.url.path)

    sender = Sender(Clients(handler), POLICY)
    try:
        # When N requests are submitted, before waiting on any
        futures = [sender.submit(_req(i)) for i in range(n)]
        outcomes = [f.result(WAIT_S) for f in futures]
    finally:
        sender.close()
    # Then every one was answered only because all were in flight together
    assert all(isinstance(o, Answer) for o in outcomes)
    assert [o.status for o in outcomes if isinstance(o, Answer)] == [200] * n
    assert [o.body for o in outcomes if isinstance(o, Answer)] == [
        f"/v1/items/{i}".encode() for i in range(n)
    ]


def test_submits_from_many_threads_share_one_loop_and_client(
    no_sender_threads_left: None,
) -> None:
    # Given a sender used by many pool threads at once, as Celery's threads do
    clients = Clients(lambda r: httpx.Response(200, text=r.url.path))
    sender = Sender(clients, POLICY)
    start = threading.Barrier(8)

    def work(i: int) -> Outcome:
        start.wait(WAIT_S)
        return sender.submit(_req(i)).result(WAIT_S)

    try:
        # When eight threads submit at the same moment
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(work, range(8)))
    finally:
        sender.close()
    # Then each gets its own answer, and only one client (one loop) was ever made
    assert [o.body for o in outcomes if isinstance(o, Answer)] == [
        f"/v1/items/{i}".encode() for i in range(8)
    ]
    assert len(clients.made) == 1


def test_close_closes_the_client_and_is_idempotent(no_sender_threads_left: None) -> None:
    # Given a started sender
    clients = Clients(lambda _: httpx.Response(200))
    sender = Sender(clients, POLICY)
    sender.submit(_req()).result(WAIT_S)
    # When closed twice
    sender.close()
    sender.close()
    # Then its client is closed and its thread is gone (checked by the fixture)
    assert [c.is_closed for c in clients.made] == [True]


def test_close_of_a_sender_never_started_does_nothing(no_sender_threads_left: None) -> None:
    # Given a sender nothing was submitted to
    clients = Clients(lambda _: httpx.Response(200))
    sender = Sender(clients, POLICY)
    # When closed / Then no client was made just to be closed
    sender.close()
    sender.close()
    assert clients.made == []


def test_failing_client_factory_raises_from_submit(no_sender_threads_left: None) -> None:
    # Given a client factory that fails (bad settings, a missing optional dependency)
    calls: list[int] = []

    def broken() -> httpx.AsyncClient:
        calls.append(1)
        raise RuntimeError("cannot build the HTTP client")

    sender = Sender(broken, POLICY)
    # When a request is submitted / Then submit raises that error instead of hanging
    with pytest.raises(RuntimeError, match="cannot build the HTTP client"):
        sender.submit(_req())
    # and the next submit tries again and raises again
    with pytest.raises(RuntimeError, match="cannot build the HTTP client"):
        sender.submit(_req())
    assert len(calls) == 2
    sender.close()
    # Whatever the failed starts left for the garbage collector is the subject of the next
    # test; collect it here so that it cannot fail some unrelated test later.
    for thread in _sender_threads():
        thread.join(WAIT_S)
    _collect_resource_warnings()


def test_failing_client_factory_leaves_no_event_loop_open(
    no_sender_threads_left: None,
) -> None:
    # Given a client factory that fails
    def broken() -> httpx.AsyncClient:
        raise RuntimeError("cannot build the HTTP client")

    _collect_resource_warnings()  # garbage of earlier tests is not this test's business
    sender = Sender(broken, POLICY)
    # When submit fails, and the sender is closed
    with contextlib.suppress(RuntimeError):
        sender.submit(_req())
    sender.close()
    for thread in _sender_threads():
        thread.join(WAIT_S)
    # Then the event loop it started was closed, not left for the garbage collector (a worker
    # whose factory fails would leak one loop per message, and with filterwarnings=error
    # the leak fails whichever test happens to collect it)
    assert _collect_resource_warnings() == []


def test_urgent_requests_go_before_waiting_bulk_ones(no_sender_threads_left: None) -> None:
    # Given a sender with room for one request on the wire, held by a first request
    release = asyncio.Event()
    order: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        order.append(request.url.path)
        if request.url.path == "/v1/items/0":
            await asyncio.wait_for(release.wait(), WAIT_S)
        return httpx.Response(200)

    sender = Sender(Clients(handler), POLICY, max_in_flight=1)
    try:
        bulk = sender.send_all([_req(i) for i in range(5)])
        deadline = time.monotonic() + WAIT_S
        while not order and time.monotonic() < deadline:
            time.sleep(0.01)
        # When an interactive request arrives behind four waiting bulk ones
        urgent = sender.send_all([_req(99)], urgent=True)
        time.sleep(0.05)  # let it queue before the wire frees up
        loop = sender._loop
        assert loop is not None
        loop.call_soon_threadsafe(release.set)
        urgent.get(timeout=WAIT_S)
        for _ in range(5):
            bulk.get(timeout=WAIT_S)
    finally:
        sender.close()
    # Then it went next, before the rest of the bulk ones
    assert order[:2] == ["/v1/items/0", "/v1/items/99"]
    assert order[2:] == [f"/v1/items/{i}" for i in range(1, 5)]


def test_a_delayed_request_is_held_back_and_checked_against_pauses(
    no_sender_threads_left: None,
) -> None:
    # Given a sender whose pause check says every key is paused for 2 s
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return httpx.Response(200)

    async def paused(_: str) -> int:
        return 2_000

    sender = Sender(Clients(handler), POLICY, make_gate=lambda: paused)
    try:
        # When one request goes at once and one after a 50 ms wait for its slot
        keyed = [replace(_req(i), pause_key="k") for i in range(2)]
        results = sender.send_all(keyed, [0.0, 0.05])
        outcomes = dict(results.get(timeout=WAIT_S) for _ in range(2))
    finally:
        sender.close()
    # Then the first was sent (its booking had just checked the pause) and the second was
    # handed back unsent, with how long the pause still lasts
    assert sent == ["/v1/items/0"]
    assert isinstance(outcomes[0], Answer)
    assert outcomes[1] == Deferred(2_000, "paused by the upstream")


def test_a_request_whose_turn_comes_too_late_for_its_lease_is_not_sent(
    no_sender_threads_left: None,
) -> None:
    # Given one connection, held by a slow request, and two more requests of a message whose
    # calls' lease lets a request (30 s long at most) start only in the next 2 s
    release = threading.Event()
    sent: list[str] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        while not release.is_set():
            await asyncio.sleep(0.01)
        return httpx.Response(200)

    sender = Sender(Clients(slow), POLICY, max_in_flight=1)
    try:
        start_by = time.monotonic() + 30.0 + 2.0
        results = sender.send_all([_req(1), _req(2), _req(3)], start_by=start_by)
        # When the first is released only after those 2 s
        time.sleep(3.0)
        release.set()
        outcomes = dict(results.get(timeout=WAIT_S) for _ in range(3))
    finally:
        sender.close()
    # Then the two that waited were handed back unsent, to run again, and saying why
    assert isinstance(outcomes[0], Answer)
    for late in (outcomes[1], outcomes[2]):
        assert isinstance(late, Deferred)
        assert late.reason == "no connection was free before its lease ran short"
    assert sent == ["/v1/items/1"]


def test_a_tenant_holds_its_share_of_the_wire_and_another_tenants_requests_go_beside_it(
    no_sender_threads_left: None,
) -> None:
    # Given a sender with room for four requests, and a tenant with eight waiting that do
    # not end yet (items 0-7)
    release = asyncio.Event()
    started: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        n = int(request.url.path.rsplit("/", 1)[1])
        started.append(n)
        if n < 100:
            await asyncio.wait_for(release.wait(), WAIT_S)
        return httpx.Response(200)

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while len(started) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    sender = Sender(Clients(handler), POLICY, max_in_flight=4)
    try:
        slow = sender.send_all([_req(i) for i in range(8)], tenants=["tn_slow"] * 8)
        wait_for(sender.tenant_share)
        time.sleep(0.1)
        # Then it holds three of the four connections
        assert sorted(started) == [0, 1, 2]
        assert sender.tenant_share == 3
        # When another tenant's requests come, they go on the fourth, one after the other,
        # while the first tenant's still wait
        quick = sender.send_all([_req(100 + i) for i in range(3)], tenants=["tn_quick"] * 3)
        assert sorted(quick.get(timeout=WAIT_S)[0] for _ in range(3)) == [0, 1, 2]
        assert started[3:] == [100, 101, 102]
        loop = sender._loop
        assert loop is not None
        loop.call_soon_threadsafe(release.set)
        assert sorted(slow.get(timeout=WAIT_S)[0] for _ in range(8)) == list(range(8))
    finally:
        sender.close()


def test_requests_of_several_tenants_take_turns_on_the_wire(
    no_sender_threads_left: None,
) -> None:
    # Given room for one request, held by a first one, and two tenants' requests waiting
    release = asyncio.Event()
    order: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        order.append(request.url.path.rsplit("/", 1)[1])
        if request.url.path.endswith("/0"):
            await asyncio.wait_for(release.wait(), WAIT_S)
        return httpx.Response(200)

    sender = Sender(Clients(handler), POLICY, max_in_flight=1)
    try:
        first = sender.send_all([_req(0)], tenants=["tn_x"])
        deadline = time.monotonic() + WAIT_S
        while not order and time.monotonic() < deadline:
            time.sleep(0.01)
        a = sender.send_all([_req(11), _req(12), _req(13)], tenants=["tn_a"] * 3)
        b = sender.send_all([_req(21), _req(22)], tenants=["tn_b"] * 2)
        time.sleep(0.05)  # let them queue before the wire frees up
        loop = sender._loop
        assert loop is not None
        loop.call_soon_threadsafe(release.set)
        first.get(timeout=WAIT_S)
        for _ in range(3):
            a.get(timeout=WAIT_S)
        for _ in range(2):
            b.get(timeout=WAIT_S)
    finally:
        sender.close()
    # Then, once it is free, tenants a and b took turns on it
    assert order == ["0", "11", "21", "12", "22", "13"]
