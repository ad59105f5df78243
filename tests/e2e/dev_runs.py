"""Running `passthru dev` as a user does, for the end-to-end tests of its traps: in a folder of
its own, on free ports, without the caller's passthru settings; and finding the
redis-server processes a dev started (one left behind by a dev that exited is an orphan):
each runs in a temp folder made under the TMPDIR that `dev_env` gives it."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from api.dev.embedded_redis import free_port
from api.dev.harness import stop_processes
from tests.e2e.test_dev import START_TIMEOUT_S, _Output

ROOT = Path(__file__).resolve().parents[2]
DEV = [sys.executable, "-m", "api.cli", "dev"]
# The TMPDIR of every dev these tests start: its embedded redis-server runs in a folder there.
TEMP_ROOT = Path(tempfile.mkdtemp(prefix="passthru-dev-traps-"))
atexit.register(shutil.rmtree, TEMP_ROOT, ignore_errors=True)


def dev_env(port: int, **settings: str) -> dict[str, str]:
    """The environment of a dev run on `port` with `settings`: this one's without passthru
    settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PASSTHRU_", "REDIS_URL", "DATABASE_URL", "FLOWER_", "PORT"))
    }
    env.update({"PORT": str(port), "FLOWER_PORT": str(free_port()), "PYTHONPATH": str(ROOT)})
    env["TMPDIR"] = str(TEMP_ROOT)
    return {**env, **settings}


def redis_servers() -> set[int]:
    """The pids of the redis-server processes running now that a dev of these tests
    started (other tests' servers are not counted). redis-server rewrites its command line
    (`redis-server 127.0.0.1:PORT`) and runs in its --dir."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes().split(b"\0")[0].split(b" ")[0]
                cwd = os.readlink(proc / "cwd")
            except OSError:
                continue
            if command.endswith(b"redis-server") and cwd.startswith(str(TEMP_ROOT)):
                pids.add(int(proc.name))
    return pids


def dev_exits(cwd: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    """Run `passthru dev` (with `flags`) that is expected to exit on its own."""
    argv = [*DEV, *flags]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@dataclass
class DevRun:
    process: subprocess.Popen[str]
    output: _Output
    port: int
    banner: str
    api_key: str

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@contextmanager
def dev_running(cwd: Path, env: dict[str, str]) -> Iterator[DevRun]:
    """`passthru dev` started, once its banner is printed; stopped (Ctrl-C) on the way out."""
    process = subprocess.Popen(
        DEV, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = _Output(process)
    try:
        output.until(lambda line: line.startswith("curl "), START_TIMEOUT_S)
        banner = output.text()
        key = re.search(r"API key +(pt_\S+)", banner)
        assert key, banner
        yield DevRun(process, output, int(env["PORT"]), banner, key[1])
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, output.text()
    finally:
        stop_processes([process], timeout_s=30)
        output.close()
