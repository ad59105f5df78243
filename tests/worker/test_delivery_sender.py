"""One webhook attempt: a total deadline, at most 1 KiB of the answer, identity encoding;
and the loop poster's budget."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.worker.webhook_poster import loop_poster
from worker.webhooks.sender import (
    ANSWER_READ_BYTES,
    LoopPoster,
    Prepared,
    Sent,
    Vacancy,
    attempt,
)

PREPARED = Prepared("msg_1", "https://hooks.example.com/in", b"{}", {"accept-encoding": "identity"})


class Endless(httpx.AsyncByteStream):
    """An answer body that never ends, counting what was read of it."""

    def __init__(self, pause_s: float = 0.0) -> None:
        self.read = 0
        self._pause_s = pause_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            if self._pause_s:
                await asyncio.sleep(self._pause_s)
            self.read += 256
            yield b"x" * 256


def _attempt(handler: httpx.MockTransport, timeout_s: float = 5.0) -> Sent:
    async def go() -> Sent:
        async with httpx.AsyncClient(transport=handler) as client:
            return await attempt(client, PREPARED, timeout_s)

    return asyncio.run(go())


def test_at_most_a_kilobyte_of_the_answer_is_read() -> None:
    # Given a receiver answering 200 with a body that never ends
    body = Endless()
    sent = _attempt(httpx.MockTransport(lambda _: httpx.Response(200, stream=body)))
    # Then the status counts, and reading stopped after about 1 KiB
    assert sent == Sent(200, None, sent.duration_ms)
    assert ANSWER_READ_BYTES <= body.read < ANSWER_READ_BYTES + 512


def test_no_status_before_the_deadline_is_a_failed_attempt() -> None:
    # Given a receiver that takes longer than the whole attempt may
    async def slow(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    sent = _attempt(httpx.MockTransport(slow), timeout_s=0.1)
    assert (sent.status_code, sent.error) == (None, "no answer within 0.1 s")


def test_a_status_that_arrived_in_time_counts_even_if_the_body_drips_past_the_deadline() -> None:
    body = Endless(pause_s=10)
    sent = _attempt(httpx.MockTransport(lambda _: httpx.Response(204, stream=body)), 0.1)
    assert (sent.status_code, sent.error) == (204, None)


def test_what_is_sent_is_what_was_prepared() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    _attempt(httpx.MockTransport(handler))
    [request] = seen
    assert (request.method, str(request.url), request.content) == (
        "POST",
        PREPARED.url,
        b"{}",
    )
    assert request.headers["accept-encoding"] == "identity"


def test_the_loop_poster_runs_attempts_off_the_calling_thread_within_its_budget() -> None:
    # Given a poster on an event loop of its own, two attempts at a time
    release = asyncio.Event()
    running = 0
    most = 0

    async def handler(_: httpx.Request) -> httpx.Response:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return httpx.Response(204)

    recorded: list[tuple[str, int | None]] = []
    recorded_on: list[threading.Thread] = []

    def done(sent: Sent | Exception, name: str) -> None:
        assert isinstance(sent, Sent)
        recorded.append((name, sent.status_code))
        recorded_on.append(threading.current_thread())

    with loop_poster(handler, concurrency=2) as (poster, loop):
        # When five are handed over: post returns at once
        for i in range(5):
            poster.post(f"d{i}", "t1", lambda: PREPARED, lambda sent, i=i: done(sent, f"d{i}"))
        assert poster.room("t1") == 2 * 2 - 5  # beyond its share: nothing more of t1's
        assert poster.room("t2") == 2 * 2  # another tenant's whole share
        deadline = time.monotonic() + 10
        while most < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        loop.call_soon_threadsafe(release.set)
        # Then all are recorded, never more than two were in flight, and none on this thread
        assert poster.drain(10)
        assert sorted(recorded) == [(f"d{i}", 204) for i in range(5)]
        assert most == 2
        assert threading.current_thread() not in recorded_on
        assert poster.room("t1") == 4
        assert poster.room("t2") == 4


@pytest.mark.parametrize("concurrency", [1, 4])
def test_one_tenant_has_room_for_two_attempts_per_slot(concurrency: int) -> None:
    def no_loop() -> asyncio.AbstractEventLoop:
        raise AssertionError("not used")

    poster = LoopPoster(no_loop, httpx.AsyncClient, concurrency=concurrency, timeout_s=1)
    assert poster.room("t1") == 2 * concurrency  # a tenant's share: a quarter


def test_an_attempt_is_prepared_only_once_it_has_a_slot() -> None:
    # Given one slot, held by an attempt the receiver does not answer yet
    release = asyncio.Event()

    async def handler(_: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(204)

    prepared: list[str] = []

    def prepare(name: str) -> Prepared:
        prepared.append(name)
        return PREPARED

    with loop_poster(handler, concurrency=1) as (poster, loop):
        # When two are handed over
        poster.post("first", "t1", lambda: prepare("first"), lambda _: None)
        poster.post("second", "t1", lambda: prepare("second"), lambda _: None)
        deadline = time.monotonic() + 10
        while not prepared and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        # Then only the one with the slot built its request (the other holds no payload)
        assert prepared == ["first"]
        loop.call_soon_threadsafe(release.set)
        assert poster.drain(10)
        assert prepared == ["first", "second"]


def test_the_sender_says_which_tenants_it_is_full_for_and_when_an_attempt_ends() -> None:
    # Given a sender of 1 slot (8 pending, 2 of one tenant's), whose receiver hangs until told
    import threading as th

    from tests.worker.webhook_poster import loop_poster

    release = asyncio.Event()

    async def receiver(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(204)

    with loop_poster(receiver, concurrency=1) as (poster, loop):
        ended: list[object] = []
        for n in range(2):
            prepared = Prepared(f"wh_{n}", "https://hooks.example.test/x", b"{}", {})
            poster.post(f"wh_{n}", "t1", lambda p=prepared: p, ended.append)
        # When it holds two attempts of t1: it is full for t1, not in all
        room = poster.vacancy()
        assert (room.any, room.full, room.ended) == (True, frozenset({"t1"}), 0)
        # ... and waiting for room returns once an attempt ends, not before
        waited = th.Event()
        waiter = th.Thread(target=lambda: (poster.wait_for_room(0, 10), waited.set()))
        waiter.start()
        assert not waited.wait(0.2)
        loop.call_soon_threadsafe(release.set)
        assert waited.wait(10)
        waiter.join()
        assert poster.drain(10)
        assert poster.vacancy() == Vacancy(any=True, full=frozenset(), ended=2)
