"""`passthru dev` as a new user meets it: it serves the API on PORT, its printed curl line
returns a completed call, and Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.embedded_redis import free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    pairs = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in pairs if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="dev uses its own SQLite")
@pytest.mark.skipif(shutil.which("ps") is None, reason="needs ps to see child processes")
def test_passthru_dev_serves_the_printed_curl_line(tmp_path: Path) -> None:
    # Given `passthru dev` started in an empty directory on a free port
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PASSTHRU_", "REDIS_URL", "DATABASE_URL"))
    }
    env.update({"PORT": str(port), "FLOWER_PORT": str(free_port()), "PYTHONPATH": str(ROOT)})
    dev = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "dev"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert dev.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        curl_line = None
        while curl_line is None:
            line = dev.stdout.readline()
            assert line, "passthru dev exited early:\n" + "".join(lines)
            assert time.monotonic() < deadline, "no curl line in time:\n" + "".join(lines)
            lines.append(line)
            if line.startswith("curl "):
                curl_line = line.strip()
        banner = "".join(lines)
        assert f"http://127.0.0.1:{port}/docs" in banner
        assert "Flower" in banner

        # When the printed line is run as printed (by a shell, as a user would)
        done = subprocess.run(["sh", "-c", curl_line], capture_output=True, text=True, timeout=30)

        # Then it returns a completed call from the demo upstream
        answer = json.loads(done.stdout)
        assert answer["status"] == "completed", answer
        assert answer["network_code"] == "200"
        assert answer["output"]["message"] == "hello, passthru"
        children = _children(dev.pid)
        assert len(children) >= 5  # demo, api, worker, beat, flower (+ redis-server)

        # And Ctrl-C stops every process it started
        dev.send_signal(signal.SIGINT)
        assert dev.wait(30) == 0
        time.sleep(0.5)
        alive = {
            p
            for p in children
            if Path(f"/proc/{p}").exists()
            and "zombie" not in Path(f"/proc/{p}/status").read_text().lower()
        }
        assert alive == set(), f"still running after Ctrl-C: {alive}"
        state = tmp_path / ".passthru"
        for name in ("encryption.key", "flower-password", "demo-api-key"):
            assert (state / name).stat().st_mode & 0o777 == 0o600, name
        assert state.stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "passthru.db").exists()
    finally:
        if dev.poll() is None:
            dev.terminate()  # stops its children too
            try:
                dev.wait(30)
            except subprocess.TimeoutExpired:
                dev.kill()
                dev.wait()
        if dev.stdout is not None:
            dev.stdout.close()
