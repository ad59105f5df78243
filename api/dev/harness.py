"""Running passthru's processes for a while, for the end-to-end tests and the benchmarks: a
new database, the environment every process of a run gets, and `Processes`, which starts
the API, workers, beat and stand-in servers (each on free ports, its output in a log file
of its own), waits until each is ready, and stops every one on the way out, the failing
way out included.

It lives beside the command lines it runs (`processes.py`) and the Redis it uses
(`embedded_redis.py`): `tests/` and `bench/` both import `api.dev` already and neither
imports the other, the import contract keeps the HTTP app from importing any of it, and
`passthru dev` shares its way of stopping processes (`stop_processes`).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.dev.embedded_redis import free_port
from api.dev.processes import api_argv, beat_argv, wait_until_answers, worker_argv
from models.db.engine import normalize_database_url

ROOT = Path(__file__).resolve().parents[2]  # the checkout: processes start there
STARTUP_TIMEOUT_S = 60.0  # for a process to say, or show, that it is ready
STOP_TIMEOUT_S = 20.0  # from SIGTERM to SIGKILL: a worker finishes the calls it holds
LOG_TAIL_CHARS = 4000  # how much of a log an error shows


def environment(
    database_url: str, redis_url: str, encryption_key: str, **settings: str
) -> dict[str, str]:
    """This process's environment for a passthru process on `database_url` and `redis_url`,
    plus `settings` (environment names, e.g. PASSTHRU_LEASE_S="6")."""
    return {
        **os.environ,
        "PASSTHRU_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PASSTHRU_ENCRYPTION_KEYS": encryption_key,
        "PYTHONUNBUFFERED": "1",
        **settings,
    }


@contextmanager
def new_database(
    folder: Path, server_url: str | None = None, prefix: str = "passthru_test"
) -> Iterator[str]:
    """The URL of a new, empty database: `<prefix>_<random>` on the Postgres server of
    `server_url` (dropped on exit, connections and all), or without one a SQLite file in
    `folder`."""
    if not server_url:
        yield f"sqlite:///{folder / 'passthru.db'}"
        return
    admin_url = make_url(normalize_database_url(server_url))
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin_url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def stop_processes(
    processes: Sequence[subprocess.Popen[Any]], timeout_s: float = STOP_TIMEOUT_S
) -> None:
    """SIGTERM to every one still running, all at once, then wait for them on one deadline;
    SIGKILL whatever outlives it (with its process group, when it leads one: a Celery
    worker's pool processes go with it)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(process)
            process.wait()


def _kill(process: subprocess.Popen[Any]) -> None:
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
            return
    except ProcessLookupError:
        return
    process.kill()


@dataclass
class Proc:
    """One started process; what it prints (stdout and stderr) goes to `log`."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def failed_to_start(self, what: str) -> RuntimeError:
        return RuntimeError(f"{self.name} {what}:\n{self.output()[-LOG_TAIL_CHARS:]}")

    def wait_for_output(self, marker: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Return once `marker` is in the output; raise if the process ends, or time runs
        out, first."""
        deadline = time.monotonic() + timeout_s
        while marker not in self.output():
            if not self.alive():
                raise self.failed_to_start(f"exited ({self.process.returncode}) before {marker!r}")
            if time.monotonic() > deadline:
                raise self.failed_to_start(f"printed no {marker!r} in {timeout_s:g} s")
            time.sleep(0.1)

    def wait_until_answers(self, url: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Return once `url` answers 200; raise if the process ends, or time runs out,
        first."""
        if not wait_until_answers(url, timeout_s, alive=self.alive):
            raise self.failed_to_start(f"did not answer at {url}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`; the exit code."""
        stop_processes([self.process], timeout_s)
        return self.process.returncode

    def kill(self) -> int:
        """SIGKILL, as a crash or the OOM killer would; the exit code."""
        if self.alive():
            self.process.kill()
        return self.process.wait()


class Processes:
    """The processes of one run, by name. Each starts in the checkout with `env` (read at
    each start: a change applies to processes started after it) and writes to
    `<logs>/<name>.log`. Leaving the `with` block stops every one still running."""

    def __init__(self, logs: Path, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.logs = logs
        self.env = env
        self.cwd = cwd
        self.procs: dict[str, Proc] = {}

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        """Start `argv` as `name` (a name still running is refused: it would be lost)."""
        if name in self.procs and self.procs[name].alive():
            raise ValueError(f"{name} is running already")
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self.env if env is None else env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = self.procs[name] = Proc(name, process, log)
        return proc

    def start_server(
        self, name: str, argv: list[str], ready_url: str, env: dict[str, str] | None = None
    ) -> Proc:
        """Start an HTTP server and wait until `ready_url` answers 200."""
        proc = self.start(name, argv, env)
        proc.wait_until_answers(ready_url)
        return proc

    def start_api(self, *extra: str, name: str = "api", port: int | None = None) -> str:
        """The API under uvicorn (with `extra` options) on `port` (else a free one), once it
        is ready (`/readyz`: its database and Redis answer); its base URL."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        self.start_server(name, api_argv(port, *extra), f"{url}/readyz")
        return url

    def start_worker(self, name: str = "worker", *extra: str) -> Proc:
        """A worker on every lane (with `extra` options), once it says it is ready."""
        proc = self.start(name, worker_argv(f"{name}-{secrets.token_hex(3)}@%h", *extra))
        proc.wait_for_output(" ready.")
        return proc

    def start_beat(self) -> Proc:
        """Beat, its schedule file beside the logs, once its scheduler has started."""
        proc = self.start("beat", beat_argv(self.logs / "beat-schedule"))
        proc.wait_for_output("beat: Starting")
        return proc

    def stop(self, name: str, *, kill: bool = False) -> Proc:
        """Stop `name` (SIGTERM, or SIGKILL with `kill`) and forget it."""
        proc = self.procs.pop(name)
        if kill:
            proc.kill()
        else:
            proc.stop()
        return proc

    def output(self) -> str:
        """What every process printed, one after another."""
        return "\n".join(proc.output() for proc in self.procs.values())

    def close(self) -> None:
        """Stop every process still running."""
        stop_processes([proc.process for proc in self.procs.values()])


class StackBase:
    """What a stack of the end-to-end tests and one of the benchmarks share: the processes
    of the run, with their environment, the processes by name and the folder of their logs."""

    processes: Processes

    @property
    def env(self) -> dict[str, str]:
        """The environment of the processes started from now on."""
        return self.processes.env

    @property
    def procs(self) -> dict[str, Proc]:
        return self.processes.procs

    @property
    def logs(self) -> Path:
        return self.processes.logs
