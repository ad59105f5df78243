"""What `passthru dev` keeps between runs in `.passthru/` (git-ignored): the encryption key,
Flower's password and the demo API key, each readable by its owner only from the moment
its file exists, in a directory only its owner can enter."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from models.crypto.secrets import generate_encryption_key

STATE_DIR = Path(".passthru")
FLOWER_USER = "passthru"


def make_state_dir() -> Path:
    """`.passthru/`, made 0700, with a .gitignore that keeps all of it out of git."""
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    (STATE_DIR / ".gitignore").write_text("*\n")
    return STATE_DIR


def write_secret(path: Path, value: str) -> None:
    """Write `value` to `path`, readable by its owner only from the first byte on: a new file
    made with mode 0600 (not chmod-ed after), renamed over the old one, so nobody who opened
    the old file reads the new value through it."""
    new = path.with_name(f".{path.name}.new")
    new.unlink(missing_ok=True)
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    os.replace(new, path)


def read_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in `path`, made with `make` the first time."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # written by an older passthru dev, readable by others
    else:
        with os.fdopen(fd, "w") as out:
            out.write(make() + "\n")
    return path.read_text().strip()


def encryption_key() -> str:
    """The dev encryption key (PASSTHRU_ENCRYPTION_KEYS unless set), made once."""
    return read_secret(STATE_DIR / "encryption.key", generate_encryption_key)


def flower_password() -> str:
    """The dev Flower password, made once."""
    return read_secret(STATE_DIR / "flower-password", lambda: secrets.token_urlsafe(12))
