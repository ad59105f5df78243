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
