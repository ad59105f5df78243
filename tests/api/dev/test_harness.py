"""The process harness of the end-to-end tests and the benchmarks: every process it started is
gone when its block ends, the failing way included; one that dies before it is ready says
why, with its log."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from api.dev.harness import Proc, Processes, new_database, stop_processes

# A process that says it is ready, then runs until it is stopped.
SERVES = [sys.executable, "-c", "import time; print('up and ready.', flush=True); time.sleep(120)"]
# One that ignores SIGTERM (as a stuck process would) and so needs SIGKILL.
STUCK = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready.', flush=True); time.sleep(120)",
]


def _two_ready_then_fail(logs: Path, started: list[Proc]) -> None:
    with Processes(logs, {}) as run:
        for name in ("first", "second"):
            started.append(run.start(name, SERVES))
            started[-1].wait_for_output(" ready.")
        raise RuntimeError("the test failed")


def test_every_process_is_stopped_when_the_block_fails(tmp_path: Path) -> None:
    # Given two processes started and ready, when the block they run in fails
    started: list[Proc] = []
    with pytest.raises(RuntimeError, match="the test failed"):
        _two_ready_then_fail(tmp_path, started)
    # Then both were stopped, by SIGTERM, and the output of each kept in its own file
    assert [proc.name for proc in started] == ["first", "second"]
    assert [proc.process.returncode for proc in started] == [-signal.SIGTERM] * 2
    assert (tmp_path / "first.log").read_text() == "up and ready.\n"
    assert (tmp_path / "second.log").read_text() == "up and ready.\n"


def test_a_process_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    with Processes(tmp_path, {}) as run:
        stuck = run.start("stuck", STUCK)
        stuck.wait_for_output("ready.")
        stop_processes([stuck.process], timeout_s=0.5)
    assert stuck.process.returncode == -signal.SIGKILL


def test_a_process_that_exits_before_it_is_ready_says_so_with_its_log(tmp_path: Path) -> None:
    with Processes(tmp_path, {}) as run:
        broken = run.start("broken", [sys.executable, "-c", "raise SystemExit('no config')"])
        with pytest.raises(RuntimeError, match=r"(?s)broken exited \(1\) .*no config"):
            broken.wait_for_output(" ready.")


def test_a_name_still_running_is_refused(tmp_path: Path) -> None:
    with Processes(tmp_path, {}) as run:
        run.start("worker", SERVES)
        with pytest.raises(ValueError, match="worker is running already"):
            run.start("worker", SERVES)
        # and once it is stopped, the name can start again
        assert run.stop("worker").process.returncode == -signal.SIGTERM
        run.start("worker", SERVES).wait_for_output(" ready.")


def test_without_a_server_the_new_database_is_a_sqlite_file(tmp_path: Path) -> None:
    with new_database(tmp_path) as url:
        assert url == f"sqlite:///{tmp_path / 'passthru.db'}"
