"""A worker's side of its interactive lane's process (worker/lane_process.py): start it,
wait until it says it is ready, start it again when it ends on its own (after a pause that
grows while it keeps failing), and stop it with the worker.

Nothing is lost while it is away: new interactive calls wait on their Redis list for any
lane of any worker, and a lane that died is marked dead at once (`on_lost`), so the next
sweep publishes again the ids it had popped and takes back the calls it was running.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO

from worker.lane_process import METRICS_PREFIX, PROCESS_PREFIX, READY_LINE

log = logging.getLogger("passthru.worker")

# How long start() waits for the first "ready" before the worker goes on without it.
READY_TIMEOUT_S = 60.0
# After the process ended on its own, the pause before the next start, doubling up to
# RESTART_MAX_S while it keeps ending within RESTART_RESET_S of its start.
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
RESTART_RESET_S = 60.0
# What a stop allows beyond the calls' own time: giving up the lease, exiting.
STOP_MARGIN_S = 5.0


def lane_command(parent_pid: int) -> list[str]:
    return [sys.executable, "-m", "worker.lane_process", "--parent", str(parent_pid)]


class LaneSupervisor:
    """`on_lost(identity)` is told the worker-process identity of a lane that died."""

    def __init__(
        self, command: Sequence[str], on_lost: Callable[[str], None] = lambda _: None
    ) -> None:
        self._command = list(command)
        self._on_lost = on_lost
        self._identity: str | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._watcher: threading.Thread | None = None
        self.metrics_port: int | None = None

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Start the process and watch it; True once it said it is ready."""
        self._watcher = threading.Thread(
            target=self._watch, name="passthru-lane-supervisor", daemon=True
        )
        self._watcher.start()
        if not self._ready.wait(ready_timeout_s):
            log.warning(
                "interactive lane: its process is not ready after %g s; interactive calls "
                "wait on their list until it is",
                ready_timeout_s,
            )
        return self._ready.is_set()

    @property
    def pid(self) -> int | None:
        with self._lock:
            return None if self._process is None else self._process.pid

    def stop(self, timeout_s: float) -> bool:
        """Ask the process to stop: it takes no more calls and waits up to `timeout_s` for
        those it runs to be stored, then gives up its lease. True when it ended by then (and
        STOP_MARGIN_S), else it is killed and the sweeper takes its calls back."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is None:
            return True
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout_s + STOP_MARGIN_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return False
        finally:
            if self._watcher is not None:
                self._watcher.join(5)
        return True

    def _watch(self) -> None:
        pause = RESTART_FIRST_S
        while not self._stopping.is_set():
            started = time.monotonic()
            code = self._run_once()
            if self._stopping.is_set():
                return
            self._lost()
            if time.monotonic() - started > RESTART_RESET_S:
                pause = RESTART_FIRST_S
            log.warning(
                "interactive lane: its process ended (exit code %s); starting it again in %g s",
                code,
                pause,
            )
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, RESTART_MAX_S)

    def _lost(self) -> None:
        if self._identity is None:
            return
        try:
            self._on_lost(self._identity)
        except Exception:  # the sweeper still finds it once its lease runs out
            log.exception("interactive lane: its end was not recorded")

    def _run_once(self) -> int:
        with self._lock:
            if self._stopping.is_set():
                return 0
            process = subprocess.Popen(
                self._command, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
            )
            self._process = process
            self.metrics_port = None
            self._identity = None
        assert process.stdout is not None
        with process.stdout:
            self._read_lines(process.stdout)
        return process.wait()

    def _read_lines(self, stdout: IO[str]) -> None:
        """What the process tells its parent, until it closes its output (it ended)."""
        for line in stdout:
            line = line.strip()
            if line == READY_LINE:
                self._ready.set()
            elif line.startswith(PROCESS_PREFIX):
                self._identity = line.removeprefix(PROCESS_PREFIX)
            elif line.startswith(METRICS_PREFIX):
                port = line.removeprefix(METRICS_PREFIX)
                self.metrics_port = int(port) if port.isdigit() else None
