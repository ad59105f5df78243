"""Bulk work yielding to interactive calls: the gate's policy on a fake clock, and the
announcements reaching it through a real Redis subscription."""

from __future__ import annotations

import time

import pytest
import redis

from api.dev.embedded_redis import EmbeddedRedis
from models.broker import BrokerPublisher
from models.keys import LIST_INTERACTIVE, QUEUE_INTERACTIVE
from worker.bulk_yield import (
    HOLD_S,
    MAX_CLOSED_S,
    OPEN_S,
    NeverHeld,
    YieldGate,
    YieldListener,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_the_gate_is_open_until_an_interactive_call_is_announced(clock: Clock) -> None:
    gate = YieldGate(clock)
    assert gate.held_for() == 0
    gate.announce()
    assert gate.held_for() == pytest.approx(HOLD_S)
    clock.now += HOLD_S / 2
    assert gate.held_for() == pytest.approx(HOLD_S / 2)
    clock.now += HOLD_S / 2
    assert gate.held_for() == 0


def test_each_announcement_extends_the_hold(clock: Clock) -> None:
    gate = YieldGate(clock)
    gate.announce()
    clock.now += HOLD_S * 0.8
    gate.announce()
    assert gate.held_for() == pytest.approx(HOLD_S)


def test_a_steady_stream_of_calls_never_holds_bulk_back_for_good(clock: Clock) -> None:
    # Given an interactive call announced every millisecond for two seconds
    gate = YieldGate(clock)
    timeline = ""
    for _ in range(2000):
        gate.announce()
        timeline += "h" if gate.held_for() > 0 else "o"
        clock.now += 0.001
    # Then bulk is held back at most MAX_CLOSED_S at a time, each hold followed by a break
    # of OPEN_S
    holds = [len(run) for run in timeline.split("o") if run][:-1]
    breaks = [len(run) for run in timeline.rstrip("o").split("h") if run]
    assert len(holds) >= 4
    assert all(abs(h - MAX_CLOSED_S * 1000) <= 1 for h in holds)
    assert all(abs(b - OPEN_S * 1000) <= 1 for b in breaks)


def test_a_hold_never_outlasts_its_cap(clock: Clock) -> None:
    gate = YieldGate(clock)
    gate.announce()
    longest = 0.0
    for _ in range(int(MAX_CLOSED_S * 1000)):
        clock.now += 0.001
        gate.announce()
        longest = max(longest, gate.held_for())
    assert gate.held_for() == 0  # the cap came: a break
    clock.now += OPEN_S / 2
    gate.announce()
    assert gate.held_for() == 0  # announcements in the break hold nothing
    clock.now += OPEN_S
    gate.announce()
    assert gate.held_for() == pytest.approx(HOLD_S)  # after it, they do again


def test_wait_sleeps_out_the_hold_and_no_longer_than_the_cap(clock: Clock) -> None:
    gate = YieldGate(clock)
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.now += s

    assert gate.wait(sleep) == 0
    gate.announce()
    assert gate.wait(sleep) == pytest.approx(HOLD_S)
    assert slept == [pytest.approx(HOLD_S)]


def test_the_lane_s_gate_never_holds(clock: Clock) -> None:
    gate = NeverHeld(clock)
    gate.announce()
    assert gate.held_for() == 0
    assert gate.wait() == 0


def test_publishing_an_interactive_call_holds_a_listening_worker_s_bulk_back(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    # Given a worker's gate listening on the real Redis
    gate = YieldGate()
    holds: list[float] = []
    YieldListener(
        lambda: redis.Redis.from_url(redis_server.url), gate, on_hold=lambda: holds.append(1)
    ).start()
    publisher = BrokerPublisher(None, redis_client)  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    # When an interactive call is published (until the subscription is up)
    while gate.held_for() == 0:
        assert time.monotonic() < deadline, "no announcement reached the gate"
        assert publisher.publish_calls(["fc_1"], QUEUE_INTERACTIVE)
        time.sleep(0.01)
    # Then bulk is held back (its sender's loop told to hold), and the id is on the lane's
    # list as before
    assert gate.held_for() > 0
    assert holds
    assert redis_client.lrange(LIST_INTERACTIVE, 0, 0) == [b"fc_1"]
