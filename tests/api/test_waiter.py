"""The waiter behind `Prefer: wait` and `?wait=`: which notice wakes whom, and when the
database is read. Notices are handed to it as its subscription would (no Redis); no test
measures time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from api import waiter as waiter_module
from api.waiter import CallWaiter, Watch
from models.calls.notices import result_notice
from models.calls.resources import CallResult
from models.keys import CHANNEL_CALL_DONE, CHANNEL_CALL_RESULT

RESULT = CallResult(
    id="fc_1", status="completed", network_code="200", output={"ok": True}, headers={}, error=None
)
NOTICE = result_notice(RESULT)


class Database:
    """Stands in for reading the call: counts reads, final from the n-th read on."""

    def __init__(self, final_from_read: int = 10**9) -> None:
        self.reads = 0
        self.final_from_read = final_from_read

    async def is_final(self) -> bool:
        self.reads += 1
        return self.reads >= self.final_from_read


def run(waiter_test: Callable[[CallWaiter], Awaitable[None]]) -> None:
    asyncio.run(waiter_test(CallWaiter("redis://127.0.0.1:1/0")))


def test_a_submission_is_answered_from_the_result_notice_without_a_read() -> None:
    db = Database()

    async def scenario(waiter: CallWaiter) -> None:
        # Given a submission watching its call from before it was published
        with waiter.watch("fc_1") as watch:
            waiting = asyncio.create_task(waiter.wait("fc_1", 30, db.is_final, watch))
            await asyncio.sleep(0)
            # When the worker announces the call's result
            assert NOTICE is not None
            waiter.on_message(CHANNEL_CALL_RESULT.encode(), NOTICE)
            # Then the wait ends with that result, and the call was never read
            assert await waiting is True
            assert watch.result == RESULT.model_dump_json().encode()
        assert db.reads == 0

    run(scenario)


def test_a_result_announced_before_the_wait_began_is_not_missed() -> None:
    db = Database()

    async def scenario(waiter: CallWaiter) -> None:
        with waiter.watch("fc_1") as watch:
            # Given the result announced between the publish and the start of the wait
            assert NOTICE is not None
            waiter.on_message(CHANNEL_CALL_RESULT.encode(), NOTICE)
            # Then the wait ends at once with it
            assert await waiter.wait("fc_1", 30, db.is_final, watch) is True
            assert watch.result is not None
        assert db.reads == 0

    run(scenario)


def test_a_long_poll_reads_the_call_again_when_a_result_notice_comes() -> None:
    # Given GET ?wait= on a running call (it answers the whole call, attempts and all)
    db = Database(final_from_read=2)

    async def scenario(waiter: CallWaiter) -> None:
        waiting = asyncio.create_task(waiter.wait("fc_1", 30, db.is_final))
        while db.reads == 0:
            await asyncio.sleep(0)
        # When the result is announced
        assert NOTICE is not None
        waiter.on_message(CHANNEL_CALL_RESULT.encode(), NOTICE)
        # Then the waiter reads the call again rather than trusting the notice alone
        assert await waiting is True
        assert db.reads == 2

    run(scenario)


def test_a_bare_id_wakes_a_submission_which_then_reads_the_call() -> None:
    # Given a result too large to announce: the worker sends the id alone
    db = Database(final_from_read=1)

    async def scenario(waiter: CallWaiter) -> None:
        with waiter.watch("fc_1") as watch:
            waiting = asyncio.create_task(waiter.wait("fc_1", 30, db.is_final, watch))
            await asyncio.sleep(0)
            waiter.on_message(CHANNEL_CALL_DONE.encode(), b"fc_0,fc_1,fc_2")
            assert await waiting is True
            assert watch.result is None
        assert db.reads == 1

    run(scenario)


def test_notices_for_other_calls_wake_nobody_and_watches_are_dropped() -> None:
    db = Database()

    async def scenario(waiter: CallWaiter) -> None:
        with waiter.watch("fc_1") as watch:
            waiter.on_message(CHANNEL_CALL_DONE.encode(), b"fc_2")
            assert not watch.event.is_set()
            assert await waiter.wait("fc_1", 0.01, db.is_final, watch) is False
        assert isinstance(watch, Watch)
        assert waiter._watches == {}

    run(scenario)


def test_stopping_ends_a_subscription_whose_close_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a subscription whose closing waits forever, twice, unless cancelled again (as
    # redis-py's pubsub close can wait for its socket)
    monkeypatch.setattr(waiter_module, "STOP_WAIT_S", 0.05)
    cancellations: list[int] = []

    class Stuck(CallWaiter):
        async def _listen(self) -> None:
            never = asyncio.Event()
            while True:
                try:
                    await never.wait()
                except asyncio.CancelledError:
                    cancellations.append(1)
                    if len(cancellations) == 3:
                        raise

    async def scenario() -> None:
        waiter = Stuck("redis://127.0.0.1:1/0")
        await waiter.start()
        await asyncio.sleep(0)
        task = waiter._task
        # When it is stopped
        await waiter.stop()
        # Then stop returned once the third cancellation ended it
        assert task is not None
        assert task.done()
        assert len(cancellations) == 3

    asyncio.run(scenario())
