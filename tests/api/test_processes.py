"""The Procfile and the process command lines agree; Flower never runs without a password."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from api.processes import CALL_AND_SWEEP_QUEUES, flower_argv

ROOT = Path(__file__).resolve().parents[2]


def _procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {
        name: shlex.split(command)
        for name, _, command in (line.partition(": ") for line in lines if line.strip())
    }


def test_the_procfile_worker_consumes_every_lane() -> None:
    worker = _procfile()["worker"]
    assert worker[worker.index("-Q") + 1] == CALL_AND_SWEEP_QUEUES


def test_flower_is_behind_basic_auth() -> None:
    assert _procfile()["flower"] == ["passthru", "flower"]
    assert "--basic-auth=ops:secret" in flower_argv(5555, "0.0.0.0", "ops:secret")


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
    from models.db import create_db_engine

    engine = create_db_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert _db_ok(engine) == "database: the schema is behind; run `passthru migrate`"
    finally:
        engine.dispose()
