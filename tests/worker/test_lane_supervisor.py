"""A worker's watch over its interactive lane's process, with small stand-in processes
(real processes, real signals): started and ready, its metrics port read, started again
after it dies, stopped, killed when it will not stop. No test measures time."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from worker.lane_process import METRICS_PREFIX, PROCESS_PREFIX, READY_LINE
from worker.lane_supervisor import DOWN_LIMIT_S, RESTART_RESET_S, LaneSupervisor


def child(body: str) -> list[str]:
    return [sys.executable, "-c", f"import os, signal, sys, time\n{body}"]


READY = (
    f"print('{PROCESS_PREFIX}host:' + str(os.getpid()) + ':abc')\n"
    f"print('{METRICS_PREFIX}4321'); print('{READY_LINE}', flush=True)\n"
)
SLEEP = "while True: time.sleep(0.05)\n"


def wait_for(predicate: object, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_process_is_ready_and_says_where_its_metrics_are() -> None:
    lane = LaneSupervisor(child(READY + SLEEP))
    try:
        assert lane.start() is True
        assert lane.metrics_port == 4321
        assert lane.pid is not None
        assert alive(lane.pid)
    finally:
        assert lane.stop(10) is True


def test_a_process_that_dies_is_started_again(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    lost: list[str] = []
    lane = LaneSupervisor(
        child(f"open({str(starts)!r}, 'a').write('x')\n" + READY + SLEEP), on_lost=lost.append
    )
    try:
        assert lane.start() is True
        first = lane.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: lane.pid not in (None, first) and starts.read_text() == "xx")
        assert lost == [f"host:{first}:abc"]  # the dead one's identity, to end its lease
        second = lane.pid
        assert second is not None
        wait_for(lambda: alive(second))
    finally:
        assert lane.stop(10) is True
    assert lane.pid is not None
    assert not alive(lane.pid)
    assert starts.read_text() == "xx"  # a stop is not followed by another start
    assert len(lost) == 1  # and a stop is no loss


def test_stop_lets_the_process_finish_on_sigterm(tmp_path: Path) -> None:
    done = tmp_path / "done"
    body = (
        "stopping = []\n"
        "signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))\n"
        + READY
        + "while not stopping: time.sleep(0.02)\n"
        + f"open({str(done)!r}, 'w').write('stored')\n"
    )
    lane = LaneSupervisor(child(body))
    assert lane.start() is True
    assert lane.stop(10) is True
    assert done.read_text() == "stored"


def test_a_process_that_will_not_stop_is_killed() -> None:
    body = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + READY + SLEEP
    lane = LaneSupervisor(child(body))
    assert lane.start() is True
    pid = lane.pid
    assert pid is not None
    assert lane.stop(0) is False  # the margin passed: killed
    assert not alive(pid)


@pytest.mark.parametrize("says", ["", f"print('{METRICS_PREFIX}not-a-port', flush=True)\n"])
def test_a_process_that_never_says_ready_does_not_hold_the_worker(says: str) -> None:
    lane = LaneSupervisor(child(says + SLEEP))
    try:
        assert lane.start(ready_timeout_s=0.5) is False
        assert lane.metrics_port is None
    finally:
        assert lane.stop(10) is True


class Clock:
    """The supervisor's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_lane_that_keeps_dying_makes_the_worker_unhealthy(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    clock = Clock()
    # ready, then gone at once: never up for RESTART_RESET_S at a stretch
    lane = LaneSupervisor(child(f"open({str(starts)!r}, 'a').write('x')\n" + READY), clock=clock)
    try:
        lane.launch()
        # the second one ended (the third starts 2 s later)
        wait_for(
            lambda: (
                starts.exists()
                and len(starts.read_text()) == 2
                and not alive(lane.pid or 0)
                and not lane.up
            )
        )
        assert lane.healthy()  # within DOWN_LIMIT_S of the first start
        clock.now += DOWN_LIMIT_S + 1
        assert not lane.healthy()
    finally:
        lane.stop(10)


def test_a_lane_that_never_becomes_ready_makes_the_worker_unhealthy() -> None:
    clock = Clock()
    lane = LaneSupervisor(child(SLEEP), clock=clock)
    try:
        lane.launch()
        assert lane.healthy()
        clock.now += DOWN_LIMIT_S + 1
        assert not lane.healthy()
    finally:
        lane.stop(10)


def test_a_lane_up_again_for_a_while_is_healthy_again() -> None:
    clock = Clock()
    # "ready" before the metrics line: a metrics port read means it was ready already
    ready_first = f"print('{READY_LINE}'); print('{METRICS_PREFIX}4322', flush=True)\n"
    lane = LaneSupervisor(child(ready_first + SLEEP), clock=clock)
    try:
        assert lane.start() is True
        clock.now += DOWN_LIMIT_S + 1  # up all along: healthy however long
        assert lane.healthy()
        first = lane.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: lane.pid not in (None, first))
        wait_for(lambda: lane.metrics_port == 4322)  # the new one said it is ready
        clock.now += RESTART_RESET_S  # and stayed up that long
        assert lane.healthy()
        clock.now += DOWN_LIMIT_S + 1
        assert lane.healthy()
    finally:
        assert lane.stop(10) is True
