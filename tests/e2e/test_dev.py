"""`passthru dev` as a new user meets it: it serves the API on PORT, its printed curl line
returns a completed call, and Ctrl-C stops every process it started — with the Redis it
picks by itself (redis-server here), and on the fakeredis fallback of a machine without
redis-server (`--redis fakeredis`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from api.dev.embedded_redis import free_port
from api.dev.harness import stop_processes

# `once` (SQLite pass only): `passthru dev` always uses a SQLite database of its own.
pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0  # dev migrates, then starts five processes on 2 busy cores
WAIT_S = 60  # how long to wait for the demo call when dev's default wait (10 s) ran out


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    pairs = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in pairs if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class _Output:
    """Every line `passthru dev` prints, read on a thread so that its pipe never fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.ended = threading.Event()
        assert process.stdout is not None
        self._stdout = process.stdout
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._stdout:
            self.lines.append(line)
        self.ended.set()

    def until(self, predicate: Callable[[str], bool], timeout_s: float) -> str:
        """The first line `predicate` accepts."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while True:
            ended = self.ended.is_set()
            for line in self.lines[seen:]:
                seen += 1
                if predicate(line):
                    return line
            assert not ended, "passthru dev exited early:\n" + self.text()
            assert time.monotonic() < deadline, "not printed in time:\n" + self.text()
            time.sleep(0.1)

    def text(self) -> str:
        return "".join(self.lines[-200:])

    def close(self) -> None:
        self.ended.wait(30)
        self._stdout.close()


def _sweeps_seen(flower_port: int, password: str, at_least: int, timeout_s: float = 60) -> bool:
    """Whether Flower saw `at_least` sweeps succeed (beat sends one every 4 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = httpx.get(
            f"http://127.0.0.1:{flower_port}/api/tasks",
            params={"taskname": "passthru.sweep", "state": "SUCCESS"},
            auth=("passthru", password),
            timeout=10,
        )
        if answer.status_code == 200 and len(answer.json()) >= at_least:
            return True
        time.sleep(1)
    return False


@pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="dev uses its own SQLite")
@pytest.mark.skipif(shutil.which("ps") is None, reason="needs ps to see child processes")
@pytest.mark.timeout(400)
@pytest.mark.parametrize("redis_flag", ["", "fakeredis"], ids=["own-choice", "fakeredis"])
def test_passthru_dev_serves_the_printed_curl_line(tmp_path: Path, redis_flag: str) -> None:
    # Given `passthru dev` started in an empty directory on a free port, choosing its Redis
    # itself or told to use fakeredis (as on a machine without redis-server)
    expected_redis = redis_flag or ("redis-server" if shutil.which("redis-server") else "fakeredis")
    port, flower_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PASSTHRU_", "REDIS_URL", "DATABASE_URL", "FLOWER_"))
    }
    env.update({"PORT": str(port), "FLOWER_PORT": str(flower_port), "PYTHONPATH": str(ROOT)})
    flags = ["--redis", redis_flag] if redis_flag else []
    argv = [sys.executable, "-m", "api.cli", "dev", *flags]
    # (with SIGINT ignored, as a script's background job starts it: Ctrl-C must stop it anyway,
    # whatever the shell that runs the tests did with SIGINT)
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        dev = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    finally:
        signal.signal(signal.SIGINT, ignored)
    output = _Output(dev)
    try:
        curl_line = output.until(lambda line: line.startswith("curl "), START_TIMEOUT_S).strip()
        banner = output.text()
        assert f"http://127.0.0.1:{port}/docs" in banner
        assert "Flower" in banner
        redis_line = re.search(r"^  Redis +(\S+) on redis://127\.0\.0\.1:(\d+)/0", banner, re.M)
        assert redis_line, banner
        assert redis_line[1] == expected_redis, banner
        redis_port = int(redis_line[2])
        api_key = re.search(r"API key +(pt_\S+)", banner)
        assert api_key, banner

        # When the printed line, in the seed's form (no Prefer), is run as printed (by a shell,
        # as a user would)
        assert "Prefer" not in curl_line
        done = subprocess.run(["sh", "-c", curl_line], capture_output=True, text=True, timeout=60)

        # Then it answers the call's result in the Integry shape plus id (dev waits 10 s by
        # default; on a loaded machine that wait may end first: then wait for that call)
        answer = json.loads(done.stdout)
        if answer.get("status") in ("queued", "running", "retrying"):
            answer = httpx.get(
                f"http://127.0.0.1:{port}/function-calls/{answer['id']}",
                params={"wait": WAIT_S},
                headers={"Authorization": f"Bearer {api_key[1]}"},
                timeout=WAIT_S + 30,
            ).json()
        else:
            assert set(answer) == {
                *("id", "status", "network_code", "output", "headers", "error", "error_message")
            }
        assert answer["status"] == "completed", (answer, output.text())
        assert answer["network_code"] == "200"
        assert answer["output"]["message"] == "hello, passthru"

        # And the terminal shows the call as one line, with its URL's path alone
        line = output.until(lambda text: answer["id"] in text and "→ 200 completed" in text, 60)
        assert " GET /api/hello  " in line, line
        assert "name=passthru" not in line, line
        # ... while the sweeps that ran meanwhile, having nothing to do, printed nothing
        password = re.search(r"user \S+, password (\S+)\)", banner)
        assert password, banner
        assert _sweeps_seen(flower_port, password[1], at_least=2), output.text()
        assert [text for text in output.lines if answer["id"] in text] == [line]
        quiet = output.text()
        assert "passthru.sweep" not in quiet, quiet
        assert "Sending due task" not in quiet, quiet

        # And the Redis is the one the banner names, its port and Flower's answering
        children = _children(dev.pid)
        assert len(children) >= 5  # demo, api, worker, beat, flower (+ redis-server)
        has_redis_server = any("redis-server" in _command(p) for p in children)
        assert has_redis_server == (expected_redis == "redis-server"), banner
        ports = {"api": port, "flower": flower_port, "redis": redis_port}
        assert {name for name, p in ports.items() if not _answers(p)} == set()

        # And Ctrl-C stops every process it started
        dev.send_signal(signal.SIGINT)
        assert dev.wait(60) == 0, output.text()
        deadline = time.monotonic() + 10
        while {p for p in children if _running(p)} and time.monotonic() < deadline:
            time.sleep(0.2)
        alive = {p: _command(p) for p in children if _running(p)}
        assert alive == {}, f"still running after Ctrl-C: {alive}"
        assert {name for name, p in ports.items() if _answers(p)} == set()
        state = tmp_path / ".passthru"
        for name in ("encryption.key", "flower-password", "demo-api-key"):
            assert (state / name).stat().st_mode & 0o777 == 0o600, name
        assert state.stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "passthru.db").exists()
    finally:
        stop_processes([dev], timeout_s=30)  # SIGTERM stops its children too
        output.close()
