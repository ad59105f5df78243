"""A worker's side of its interactive lane's process (worker/lane_process.py): start it,
wait until it says it is ready, start it again when it ends on its own (after a pause that
grows while it keeps failing), stop it with the worker, and tell the worker's heartbeat
when it has kept failing too long (`healthy`).

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
# A lane that has not stayed up for RESTART_RESET_S at a stretch for this long (it keeps
# dying, or never becomes ready) makes the worker unhealthy (`healthy`).
DOWN_LIMIT_S = 120.0


def lane_command(parent_pid: int) -> list[str]:
    return [sys.executable, "-m", "worker.lane_process", "--parent", str(parent_pid)]


class LaneSupervisor:
    """`on_lost(identity)` is told the worker-process identity of a lane that died."""

    def __init__(
        self,
        command: Sequence[str],
        on_lost: Callable[[str], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._command = list(command)
        self._on_lost = on_lost
        self._clock = clock
        self._down_since = 0.0  # since when it has not stayed up (set at `launch`)
        self._up_since: float | None = None  # since when the process running is ready
        self._identity: str | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._watcher: threading.Thread | None = None
        self.metrics_port: int | None = None

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Start the process and watch it; True once it said it is ready."""
        self.launch()
        return self.wait_ready(ready_timeout_s)

    def launch(self) -> None:
        """Start the process and watch it, without waiting for it (it boots meanwhile)."""
        self._down_since = self._clock()
        self._watcher = threading.Thread(
            target=self._watch, name="passthru-lane-supervisor", daemon=True
        )
        self._watcher.start()

    def wait_ready(self, ready_timeout_s: float = READY_TIMEOUT_S) -> bool:
        """True once the process said it is ready (after `launch`), or False after
        `ready_timeout_s`."""
        if not self._ready.wait(ready_timeout_s):
            log.warning(
                "interactive lane: its process is not ready after %g s; interactive calls "
                "wait on their list until it is",
                ready_timeout_s,
            )
        return self._ready.is_set()

    @property
    def up(self) -> bool:
        """Whether the process running now has said it is ready."""
        with self._lock:
            return self._up_since is not None

    def healthy(self) -> bool:
        """False once the process has not stayed up (ready) for RESTART_RESET_S at a
        stretch in DOWN_LIMIT_S: it keeps dying, or it never becomes ready. The worker
        then stops its heartbeat, so its liveness check fails and it is replaced."""
        now = self._clock()
        with self._lock:
            if self._steady(now):
                return True
            return now - self._down_since < DOWN_LIMIT_S

    def _steady(self, now: float) -> bool:
        """The process running now has been ready for RESTART_RESET_S (under the lock)."""
        return self._up_since is not None and now - self._up_since >= RESTART_RESET_S

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
            started = self._clock()
            code = self._run_once()
            if self._stopping.is_set():
                return
            now = self._clock()
            with self._lock:
                if self._steady(now):
                    self._down_since = now  # it had stayed up: a new outage starts
                self._up_since = None
            self._lost()
            if now - started > RESTART_RESET_S:
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
                with self._lock:
                    self._up_since = self._clock()
                self._ready.set()
            elif line.startswith(PROCESS_PREFIX):
                self._identity = line.removeprefix(PROCESS_PREFIX)
            elif line.startswith(METRICS_PREFIX):
                port = line.removeprefix(METRICS_PREFIX)
                self.metrics_port = int(port) if port.isdigit() else None
