"""The secrets `passthru dev` keeps in .passthru/ are readable by their owner only, from the
moment each file exists."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

import models.settings
from api.dev import demo_data, state
from models.crypto.secrets import generate_encryption_key


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """dev's state folder, with no umask to narrow modes and no chmod to fix them after the
    fact: a file made readable by all and chmod-ed later shows here as 0666."""
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    monkeypatch.setattr(Path, "chmod", lambda *_a, **_k: None)
    monkeypatch.setattr(os, "chmod", lambda *_a, **_k: None)
    old_umask = os.umask(0)
    try:
        yield tmp_path
    finally:
        os.umask(old_umask)


def test_dev_makes_its_secret_files_with_mode_0600(
    state_dir: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an empty state folder
    monkeypatch.setenv("PASSTHRU_ENCRYPTION_KEYS", generate_encryption_key())
    models.settings.get_settings.cache_clear()
    try:
        # When dev makes its Flower password, encryption key and demo tenant
        password = state.flower_password()
        key = state.encryption_key()
        api_key = demo_data.demo_tenant(engine)
    finally:
        models.settings.get_settings.cache_clear()
    # Then each is kept in a file only its owner can read
    for name, value in [
        ("flower-password", password),
        ("encryption.key", key),
        ("demo-api-key", api_key),
    ]:
        path = state_dir / name
        assert path.read_text().strip() == value
        assert _mode(path) == 0o600, name
    # and the same values are read back next time
    assert state.flower_password() == password
    assert state.encryption_key() == key
    assert sorted(p.name for p in state_dir.iterdir()) == [
        "demo-api-key",
        "demo-tenant-id",
        "encryption.key",
        "flower-password",
    ]


def test_a_rewritten_secret_file_is_a_new_file_with_mode_0600(state_dir: Path) -> None:
    # Given a secret file readable by all, held open by someone
    path = state_dir / "demo-api-key"
    path.write_text("pt_old\n")
    assert _mode(path) == 0o666
    with path.open() as reader:
        # When dev writes a new key there
        state.write_secret(path, "pt_new")
        # Then the open file still holds the old key only
        assert reader.read() == "pt_old\n"
    # and the new one is in a file only its owner can read
    assert path.read_text() == "pt_new\n"
    assert _mode(path) == 0o600


def test_a_secret_file_an_older_version_left_readable_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a Flower password file written readable by all (as older versions did)
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    path = tmp_path / "flower-password"
    path.write_text("hunter2\n")
    path.chmod(0o644)
    # When dev reads it / Then it keeps the password and closes the file to others
    assert state.flower_password() == "hunter2"
    assert _mode(path) == 0o600
