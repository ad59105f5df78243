"""The calls a worker process's Celery threads hold at once (worker/budget.py): a message
waits, unclaimed, until the calls held leave room for its own, and never when it is a single
call or when nothing is held. Threads, no clock: each test waits on events and barriers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import pytest
from prometheus_client import CollectorRegistry, Gauge

from worker import budget as budget_module
from worker.budget import CallBudget

JOIN_S = 10.0  # a bound for a thread that should end, never reached when the code is right


def in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + JOIN_S
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.005)


def test_a_message_that_fits_is_held_at_once_and_let_go_after() -> None:
    budget = CallBudget(limit=300)
    with budget.hold(100), budget.hold(200):
        assert budget.held == 300
    assert budget.held == 0


def test_a_message_waits_until_the_calls_held_leave_room_for_it() -> None:
    # Given 700 of 768 calls held
    budget = CallBudget(limit=768)
    entered = threading.Event()

    def next_message() -> None:
        with budget.hold(100):
            entered.set()

    with budget.hold(700):
        waiting = in_thread(next_message)
        wait_until(lambda: waiting.is_alive())
        # Then a message of 100 does not start while they are held
        assert not entered.wait(0.2)
        assert budget.held == 700
    # And it starts as soon as they are let go
    waiting.join(JOIN_S)
    assert entered.is_set()
    assert budget.held == 0


def test_a_single_call_never_waits() -> None:
    # An interactive retry, or a call published again, is not held back behind bulk
    budget = CallBudget(limit=10)
    with budget.hold(10), budget.hold(1):
        assert budget.held == 11


def test_a_message_larger_than_the_limit_runs_when_nothing_else_is_held() -> None:
    budget = CallBudget(limit=50)
    with budget.hold(100):
        assert budget.held == 100


def test_every_waiting_message_that_fits_starts_on_one_release() -> None:
    # Given three messages of 3 calls waiting behind 9 of 10 calls held
    budget = CallBudget(limit=10)
    together = threading.Barrier(3, timeout=JOIN_S)
    started: list[int] = []

    def small_message() -> None:
        with budget.hold(3):
            started.append(budget.held)
            together.wait()  # broken (and the test fails) unless all three are in at once

    with budget.hold(9):
        threads = [in_thread(small_message) for _ in range(3)]
        wait_until(lambda: all(t.is_alive() for t in threads))
        assert not started
    # When the 9 are let go, all three start: 9 calls held, under the limit
    for thread in threads:
        thread.join(JOIN_S)
    assert len(started) == 3
    assert not together.broken
    assert budget.held == 0


def test_its_gauges_show_the_calls_held_and_the_messages_waiting() -> None:
    # What passthru_worker_calls_held and passthru_worker_messages_waiting export
    registry = CollectorRegistry()
    held = Gauge("held", "calls held", registry=registry)
    waiting = Gauge("waiting", "messages waiting", registry=registry)
    budget = CallBudget(limit=768, held=held, waiting=waiting)

    def value(name: str) -> float | None:
        return registry.get_sample_value(name)

    entered, leave = threading.Event(), threading.Event()

    def next_message() -> None:
        with budget.hold(100):
            entered.set()
            leave.wait(JOIN_S)

    with budget.hold(700):
        waiter = in_thread(next_message)
        wait_until(lambda: value("waiting") == 1)
        assert value("held") == 700
    assert entered.wait(JOIN_S)
    assert (value("held"), value("waiting")) == (100, 0)
    leave.set()
    waiter.join(JOIN_S)
    assert (value("held"), value("waiting")) == (0, 0)


def test_one_owner_holds_at_most_its_share_and_another_owners_message_passes_it() -> None:
    # Given a budget of 768 calls, 500 held by one bulk shard and its next message waiting
    # (600 would be over its share, 576)
    budget = CallBudget(limit=768)
    entered: list[str] = []

    def message(owner: str) -> Callable[[], None]:
        def run() -> None:
            with budget.hold(100, owner):
                entered.append(owner)

        return run

    with budget.hold(500, "passthru.bulk.3"):
        same = in_thread(message("passthru.bulk.3"))
        wait_until(lambda: budget.held == 500 and same.is_alive())
        time.sleep(0.05)
        assert entered == []
        # When another shard's message comes behind it, it starts at once (600 of 768)
        other = in_thread(message("passthru.bulk.5"))
        other.join(JOIN_S)
        assert entered == ["passthru.bulk.5"]
        assert same.is_alive()
    # And the first shard's waits for its own calls to leave room in its share
    same.join(JOIN_S)
    assert entered == ["passthru.bulk.5", "passthru.bulk.3"]


def test_a_message_short_of_room_keeps_its_place() -> None:
    # Given 9 of 10 calls held (6 and 3), a message of 5 waiting, and one of 2 behind it
    budget = CallBudget(limit=10)
    entered: list[int] = []

    def message(calls: int, owner: str) -> Callable[[], None]:
        def run() -> None:
            with budget.hold(calls, owner):
                entered.append(calls)

        return run

    with budget.hold(6, "passthru.bulk.1"):
        with budget.hold(3, "passthru.bulk.2"):
            big = in_thread(message(5, "passthru.bulk.3"))
            wait_until(big.is_alive)
            time.sleep(0.05)
            small = in_thread(message(2, "passthru.bulk.4"))
            wait_until(small.is_alive)
            time.sleep(0.05)
        # When 3 are let go (room for the 2, not for the 5)
        time.sleep(0.05)
        # Then neither starts: the 2 does not pass the 5, which was first
        assert entered == []
    # And both start once there is room for the first
    big.join(JOIN_S)
    small.join(JOIN_S)
    assert sorted(entered) == [2, 5]


@contextmanager
def hold_three(budget: CallBudget, owner: str) -> Iterator[None]:
    """Three one-call messages of `owner` held for the block."""
    with budget.hold(1, owner), budget.hold(1, owner), budget.hold(1, owner):
        yield


def test_one_owner_holds_at_most_its_share_of_the_threads() -> None:
    # Given a pool of 4 threads (a shard's share: 3) and three one-call messages of one
    # shard held, far under the calls' limit
    budget = CallBudget(limit=1000, threads=4)
    entered: list[str] = []

    def message(owner: str) -> Callable[[], None]:
        def run() -> None:
            with budget.hold(1, owner):
                entered.append(owner)

        return run

    with hold_three(budget, "passthru.bulk.2"):
        # Then its fourth waits
        fourth = in_thread(message("passthru.bulk.2"))
        wait_until(lambda: fourth.is_alive())
        time.sleep(0.05)
        assert entered == []
        # While another shard's message starts at once
        other = in_thread(message("passthru.bulk.6"))
        other.join(JOIN_S)
        assert entered == ["passthru.bulk.6"]
    # And the fourth starts when the three end
    fourth.join(JOIN_S)
    assert entered == ["passthru.bulk.6", "passthru.bulk.2"]


def test_the_pools_real_size_sets_the_share_of_the_threads() -> None:
    # Given a budget told of 2 threads (a shard's share: 1) after it was made for 32
    budget = CallBudget(limit=1000, threads=32)
    budget.use_threads(2)
    entered = threading.Event()

    def second() -> None:
        with budget.hold(1, "passthru.bulk.2"):
            entered.set()

    with budget.hold(1, "passthru.bulk.2"):
        thread = in_thread(second)
        # Then the shard's second message waits for its first
        assert not entered.wait(0.2)
    thread.join(JOIN_S)
    assert entered.is_set()


def test_a_reserved_message_counts_in_its_owners_shares_before_it_is_held() -> None:
    # Given a budget of 768 calls (an owner's share: 576) and 32 threads (its share: 24), an
    # owner holding 400 calls, and a message of 100 more of its calls reserved (a chunk just
    # taken, not yet held)
    budget = CallBudget(limit=768, threads=32)
    with budget.hold(400, "tn_a"):
        budget.reserve("tn_a", 100)
        # Then the next chunk of 100 would pass the share: the owner is full
        assert budget.full(100) == ["tn_a"]
        assert budget.full(76) == []
        # And once the reserved message is held, it counts as held, not twice
        with budget.hold(100, "tn_a", reserved=True):
            assert budget.held == 500
            assert budget.full(100) == ["tn_a"]
            assert budget.full(76) == []
        assert budget.full(100) == []
    assert budget.held == 0


class Interrupted(BaseException):
    pass


class InterruptedWait(threading.Event):
    def wait(self, timeout: float | None = None) -> bool:
        raise Interrupted


def test_a_waiting_message_that_ends_by_an_error_lets_go_of_its_place_and_wakes_a_taker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 4 threads (an owner's share: 3), an owner's three messages held and its fourth,
    # reserved, waiting for one of them
    budget = CallBudget(limit=1000, threads=4)
    woken: list[bool] = []
    with hold_three(budget, "tn_a"):
        budget.reserve("tn_a", 1)
        assert budget.full(1) == ["tn_a"]
        looker = in_thread(lambda: woken.append(budget.wait_for_release(JOIN_S)))
        wait_until(lambda: looker.is_alive())
        time.sleep(0.05)

        def fourth() -> None:
            with budget.hold(1, "tn_a", reserved=True):
                raise AssertionError("never held")

        # When the waiting message is interrupted
        monkeypatch.setattr(
            budget_module, "_Waiter", partial(budget_module._Waiter, admitted=InterruptedWait())
        )
        with pytest.raises(Interrupted):
            fourth()
        # Then its place is let go, and a thread waiting to take a chunk is woken
        looker.join(JOIN_S)
        assert woken == [True]
        assert budget.full(1) == ["tn_a"]  # the three still held
    assert budget.full(1) == []
    assert budget.held == 0


def test_a_reserved_message_waiting_for_room_still_counts_in_its_owners_share() -> None:
    # Given 768 calls (an owner's share: 576), tenant a holding 400 and tenant b 300, and a
    # chunk of 100 of tenant a's taken (reserved)
    budget = CallBudget(limit=768, threads=32)
    entered = threading.Event()

    def chunk() -> None:
        with budget.hold(100, "tn_a", reserved=True):
            entered.set()

    with budget.hold(400, "tn_a"):
        budget.reserve("tn_a", 100)
        with budget.hold(300, "tn_b"):
            # When the chunk waits for room (700 + 100 > 768)
            thread = in_thread(chunk)
            wait_until(lambda: thread.is_alive())
            time.sleep(0.05)
            assert not entered.is_set()
            # Then its calls still count for its tenant: another chunk would pass the share
            assert budget.full(100) == ["tn_a"]
        # And once let in, they count as held, once
        thread.join(JOIN_S)
        assert entered.is_set()
        assert budget.full(76) == []
    assert budget.full(100) == []
    assert budget.held == 0
