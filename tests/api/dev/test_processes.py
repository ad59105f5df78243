"""The Procfile and the process command lines agree; Flower never runs without a password."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from api.dev import run as dev
from api.dev import state
from api.dev.embedded_redis import EmbeddedRedis, free_port
from api.dev.environment import environment
from api.dev.harness import Processes
from api.dev.ports import DevPorts
from api.dev.processes import CALL_AND_SWEEP_QUEUES, flower_argv, flower_env

ROOT = Path(__file__).resolve().parents[3]


def _procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {
        name: shlex.split(command)
        for name, _, command in (line.partition(": ") for line in lines if line.strip())
    }


def test_the_procfile_worker_consumes_every_lane() -> None:
    worker = _procfile()["worker"]
    assert worker[worker.index("-Q") + 1] == CALL_AND_SWEEP_QUEUES


def test_flower_s_password_is_in_its_environment_not_on_its_command_line() -> None:
    assert _procfile()["flower"] == ["passthru", "flower"]
    argv = flower_argv(5555, "0.0.0.0")
    assert not [a for a in argv if "auth" in a]
    assert flower_env({"PATH": "/bin"}, "ops:secret") == {
        "PATH": "/bin",
        "FLOWER_BASIC_AUTH": "ops:secret",
    }


@contextmanager
def _flower(
    argv: list[str], env: dict[str, str], cwd: Path, port: int, logs: Path
) -> Iterator[int]:
    """A real Flower started in `cwd`, once it answers; yields its pid."""
    with Processes(logs, env, cwd=cwd) as processes:
        url = f"http://127.0.0.1:{port}/healthcheck"
        yield processes.start_server("flower", argv, url).pid


def _assert_behind(port: int, pid: int, user: str, password: str) -> None:
    """Flower answers 401 without the password and 200 with it; `ps` does not show it."""
    url = f"http://127.0.0.1:{port}/"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, auth=(user, password + "x"), timeout=10).status_code == 401
    assert httpx.get(url, auth=(user, password), timeout=10).status_code == 200
    command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert password not in command_line
    assert "basic" not in command_line


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_flower_started_as_dev_starts_it_is_behind_its_password(
    tmp_path: Path, redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Flower's command line and environment as `passthru dev` makes them
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    port = free_port()
    ports = DevPorts(api=free_port(), flower=port, metrics=0, worker_metrics=0, demo=free_port())
    env = environment(dict(os.environ), redis_server.url, ports, tmp_path / "heartbeat")
    argv, flower_environment = dev._flower(ports, env)["flower"]
    # When it runs / Then it asks for the password printed in the banner, which only it got
    with _flower(argv, flower_environment, ROOT, port, tmp_path) as pid:
        _assert_behind(port, pid, state.FLOWER_USER, state.flower_password())
    # and no other process of dev was given it
    others = [e for _, e in dev._commands(ports, env, "token").values()]
    assert len(others) == 4
    assert state.flower_password() not in str(others)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_passthru_flower_takes_its_password_from_the_settings(
    tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    # Given FLOWER_BASIC_AUTH only in a .env file, which Flower itself does not read
    port = free_port()
    (tmp_path / ".env").write_text(
        f"FLOWER_BASIC_AUTH=ops:s3cret-{port}\nFLOWER_PORT={port}\nREDIS_URL={redis_server.url}\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    # When `passthru flower` runs / Then Flower asks for that password
    argv = [sys.executable, "-m", "api.cli", "flower"]
    with _flower(argv, env, tmp_path, port, tmp_path) as pid:
        _assert_behind(port, pid, "ops", f"s3cret-{port}")


def test_passthru_flower_refuses_to_start_without_a_password(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "flower"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "FLOWER_BASIC_AUTH" in done.stderr


def _alive(tmp_path: Path, heartbeat: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "worker-alive", "--max-age", "30"],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "PASSTHRU_HEARTBEAT_FILE": str(heartbeat),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_worker_alive_reads_the_heartbeat(tmp_path: Path) -> None:
    heartbeat = tmp_path / "hb"
    assert _alive(tmp_path, heartbeat).returncode == 1  # no worker yet
    heartbeat.touch()
    assert _alive(tmp_path, heartbeat).returncode == 0
    old = heartbeat.stat().st_mtime - 120
    os.utime(heartbeat, (old, old))
    stale = _alive(tmp_path, heartbeat)
    assert stale.returncode == 1
    assert "last heartbeat" in stale.stderr


def test_readiness_says_when_the_schema_is_behind(tmp_path: Path) -> None:
    from api.routes.health import _db_ok
    from models.db.engine import create_db_engine

    engine = create_db_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert _db_ok(engine) == "database: the schema is behind; run `passthru migrate`"
    finally:
        engine.dispose()
