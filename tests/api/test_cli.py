"""The `passthru` command line as a user runs it (a subprocess in a folder of its own): every
command's help names the environment it reads; tenants are created with checked, unique
names and listed without keys; a missing or old database is named, never created."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli import parser

ROOT = Path(__file__).resolve().parents[2]
COMMANDS_AND_ENV = [
    (["dev"], "REDIS_URL"),
    (["migrate"], "DATABASE_URL"),
    (["tenants"], "DATABASE_URL"),
    (["tenants", "create"], "DATABASE_URL"),
    (["tenants", "list"], "DATABASE_URL"),
    (["tenants", "rotate-key"], "DATABASE_URL"),
    (["rotate-keys"], "PASSTHRU_ENCRYPTION_KEYS"),
    (["flower"], "FLOWER_BASIC_AUTH"),
    (["worker-alive"], "PASSTHRU_HEARTBEAT_FILE"),
    (["keys", "generate"], "Reads no setting"),
    (["apps", "docs"], "Reads no setting"),
]


def _passthru(cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PASSTHRU_")}
    clean.pop("DATABASE_URL", None)
    clean.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *argv],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("argv", "names"), COMMANDS_AND_ENV)
def test_every_command_has_a_description_and_names_its_environment(
    argv: list[str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args([*argv, "--help"])
    shown = capsys.readouterr().out
    description = shown.split("\n\n")[1]
    assert not description.startswith(("positional", "options")), shown
    assert names in shown


def test_the_root_help_says_where_the_command_is(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    assert ".venv/bin/passthru" in capsys.readouterr().out


def test_a_missing_database_is_named_and_not_created(tmp_path: Path) -> None:
    # Given a folder with no database, when a tenant command runs there
    result = _passthru(tmp_path, "tenants", "create", "acme")
    # Then one line names the file and what to do, and no empty database is left behind
    assert result.returncode == 2
    assert str(tmp_path / "passthru.db") in result.stderr
    assert "passthru migrate" in result.stderr
    assert not (tmp_path / "passthru.db").exists()


def test_an_old_schema_names_the_database_it_opened(tmp_path: Path) -> None:
    # Given a database file with no schema (a password in the URL would be masked: shown())
    (tmp_path / "old.db").touch()
    result = _passthru(tmp_path, "tenants", "list", DATABASE_URL="sqlite:///./old.db")
    assert result.returncode == 2
    assert "sqlite:///./old.db" in result.stderr
    assert "not up to date" in result.stderr


def test_tenants_are_created_once_per_name_and_listed_without_keys(tmp_path: Path) -> None:
    assert _passthru(tmp_path, "migrate").returncode == 0
    created = _passthru(tmp_path, "tenants", "create", "acme")
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    # The same name again, an empty one, or one with a control character: one line, exit 2
    for name in ("acme", "", " ", "a\tb", "n" * 201):
        refused = _passthru(tmp_path, "tenants", "create", name)
        assert refused.returncode == 2, name
        assert len(refused.stderr.strip().splitlines()) == 1
    table = _passthru(tmp_path, "tenants", "list")
    assert table.stdout.splitlines()[0].split() == ["ID", "NAME", "CREATED", "LAST", "CALL"]
    assert tenant["id"] in table.stdout
    assert "never" in table.stdout
    rows = [
        json.loads(line)
        for line in _passthru(tmp_path, "tenants", "list", "--json").stdout.splitlines()
    ]
    assert rows == [{**rows[0], "id": tenant["id"], "name": "acme", "last_call_at": None}]
    assert tenant["api_key"] not in table.stdout + json.dumps(rows)
