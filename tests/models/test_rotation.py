"""`passthru rotate-keys`: every credential re-encrypted with the first key, calls unharmed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from models.db import create_db_engine
from models.migrate import upgrade
from models.rotation import rotate_credentials
from models.secrets import Vault, api_key_matches, generate_encryption_key
from models.tables import ConnectedAccount, Tenant
from models.tenants import create_tenant, rotate_api_key
from tests.worker.factories import make_account

ROOT = Path(__file__).resolve().parents[2]


def _tokens(engine: Engine, tenant: Tenant) -> dict[str, str]:
    with Session(engine) as session:
        rows = session.exec(select(ConnectedAccount).where(ConnectedAccount.tenant_id == tenant.id))
        return {a.id: a.credentials_enc for a in rows}


def test_rotation_moves_every_credential_to_the_first_key(engine: Engine, tenant: Tenant) -> None:
    # Given three accounts written under the old key
    old, new = generate_encryption_key(), generate_encryption_key()
    for n in range(3):
        make_account(engine, tenant, Vault([old]), credentials={"access_token": f"t{n}"})
    # When rotated with the new key first
    report = rotate_credentials(engine, Vault([new, old]))
    # Then each reads with the new key alone, unchanged (the database is shared with other
    # tests, whose accounts other keys wrote: those are counted, not touched)
    assert report.rotated >= 3
    only_new = Vault([new])
    values = sorted(only_new.decrypt(t)["access_token"] for t in _tokens(engine, tenant).values())
    assert values == ["t0", "t1", "t2"]


def test_credentials_no_key_opens_are_counted_and_left_alone(
    engine: Engine, tenant: Tenant
) -> None:
    stranger = generate_encryption_key()
    account = make_account(engine, tenant, Vault([stranger]), credentials={"api_key": "k"})
    before = _tokens(engine, tenant)[account.id]
    report = rotate_credentials(engine, Vault([generate_encryption_key()]))
    assert report.undecryptable >= 1
    assert _tokens(engine, tenant)[account.id] == before


def test_the_command_prints_what_it_did(tmp_path: Path) -> None:
    # Given a database of its own with an account under the old key, and the keys listed
    # new first
    database_url = f"sqlite:///{tmp_path / 'rotate.db'}"
    engine = create_db_engine(database_url)
    upgrade(engine)
    tenant, _ = create_tenant(engine, "rotation")
    old, new = generate_encryption_key(), generate_encryption_key()
    account = make_account(engine, tenant, Vault([old]), credentials={"api_key": "k"})
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": database_url,
        "PASSTHRU_ENCRYPTION_KEYS": f"{new},{old}",
    }
    # When `passthru rotate-keys` runs (from a folder without a .env)
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "rotate-keys"],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then it succeeds, prints counts as JSON and progress on stderr, and the account reads
    # with the new key alone
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rotated"] >= 1
    assert "accounts" in done.stderr
    assert Vault([new]).decrypt(_tokens(engine, tenant)[account.id]) == {"api_key": "k"}
    engine.dispose()


def test_a_tenant_gets_a_new_api_key_and_the_old_one_stops(engine: Engine) -> None:
    tenant, old = create_tenant(engine, "rotating")
    new = rotate_api_key(engine, tenant.id)
    with Session(engine) as session:
        stored = session.get(Tenant, tenant.id)
        assert stored is not None
        assert api_key_matches(new, stored.api_key_hash)
        assert not api_key_matches(old, stored.api_key_hash)
        assert stored.api_key_prefix == new[:8]


def test_rotating_the_key_of_no_tenant_says_so(engine: Engine) -> None:
    with pytest.raises(LookupError, match="no tenant"):
        rotate_api_key(engine, "tn_missing")
