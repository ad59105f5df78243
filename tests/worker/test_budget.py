"""The calls a worker process's Celery threads hold at once (worker/budget.py): a message
waits, unclaimed, until the calls held leave room for its own, and never when it is a single
call or when nothing is held. Threads, no clock: each test waits on events and barriers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge

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
