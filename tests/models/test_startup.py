"""A configuration problem at any process's start is one line that names the environment
variable and the fix, with exit code 2 and no traceback: the `passthru` commands, the API
factory (as uvicorn calls it) and the Celery app (as `celery -A worker.app` loads it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSTHRU = [sys.executable, "-m", "api.cli"]
BAD_SETTINGS = [
    # (variable, value, what the line must say)
    ("PASSTHRU_UPSTREAM_OVERRIDES", "{bad", "line 1 column 2"),
    ("PASSTHRU_UPSTREAM_OVERRIDES", '{"https://slack.com": "127.0.0.1:9000"}', "http"),
    ("DATABASE_URL", "nonsense://x", "postgresql://"),
    ("PASSTHRU_DEFAULT_WAIT_S", "999", "less than or equal to 60"),
    ("PORT", "eighty", "integer"),
    ("PASSTHRU_ENCRYPTION_KEYS", "not-a-key", "passthru keys generate"),
    ("PASSTHRU_APPS_FILE", "/nonexistent/apps.yaml", "cannot read it"),
]


def _run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PASSTHRU_")}
    clean.pop("DATABASE_URL", None)
    clean.update(PYTHONPATH=str(ROOT), REDIS_URL="redis://127.0.0.1:1/0", **env)
    return subprocess.run(
        argv, cwd=cwd, env=clean, capture_output=True, text=True, timeout=60, check=False
    )


def _assert_one_line(result: subprocess.CompletedProcess[str], name: str, says: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("passthru: ")
    assert name in lines[0]
    assert says in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("name", "value", "says"), BAD_SETTINGS)
def test_a_command_names_the_variable(tmp_path: Path, name: str, value: str, says: str) -> None:
    # Given a bad setting, when a command starts, then one line names the variable.
    result = _run([*PASSTHRU, "migrate"], tmp_path, **{name: value})
    _assert_one_line(result, name, says)
    assert not (tmp_path / "passthru.db").exists()


def test_a_multi_line_reason_is_told_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "apps.yaml").write_text("slack: [\n")
    result = _run([*PASSTHRU, "migrate"], tmp_path, PASSTHRU_APPS_FILE=str(tmp_path / "apps.yaml"))
    _assert_one_line(result, "PASSTHRU_APPS_FILE", "not valid YAML")


def test_a_json_setting_in_dot_env_says_so(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PASSTHRU_UPSTREAM_OVERRIDES={bad\n")
    result = _run([*PASSTHRU, "tenants", "create", "x"], tmp_path)
    _assert_one_line(result, "PASSTHRU_UPSTREAM_OVERRIDES", ".env")


def test_an_unreachable_database_names_database_url(tmp_path: Path) -> None:
    result = _run(
        [*PASSTHRU, "migrate"], tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/no/such/dir/x.db"
    )
    _assert_one_line(result, "DATABASE_URL", "cannot open the database")


def test_a_database_password_is_never_printed(tmp_path: Path) -> None:
    result = _run(
        [*PASSTHRU, "migrate"], tmp_path, DATABASE_URL="postgresql://u:s3cret@127.0.0.1:1/x"
    )
    _assert_one_line(result, "DATABASE_URL", "cannot open the database")
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize(("name", "value", "says"), BAD_SETTINGS[:4])
def test_the_api_factory_names_the_variable(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    code = "from api.app import create_app; create_app()"
    _assert_one_line(_run([sys.executable, "-c", code], tmp_path, **{name: value}), name, says)


@pytest.mark.parametrize(("name", "value", "says"), BAD_SETTINGS[:4])
def test_the_worker_app_names_the_variable(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    code = "import worker.app"
    _assert_one_line(_run([sys.executable, "-c", code], tmp_path, **{name: value}), name, says)


def test_keys_generate_works_whatever_the_settings(tmp_path: Path) -> None:
    # The fix a bad PASSTHRU_ENCRYPTION_KEYS asks for must itself run.
    result = _run([*PASSTHRU, "keys", "generate"], tmp_path, PASSTHRU_ENCRYPTION_KEYS="bad")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 44
