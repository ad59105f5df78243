"""`passthru dev` keeps its state coherent: it finds its demo tenant by the id it keeps in
`.passthru/`, re-keys that same tenant when the kept key no longer opens it, and warns when
stored credentials cannot be decrypted with the current keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

import models.settings
from api.account_store import create_account
from api.dev import demo_data, state
from api.dev.stored_keys import check_stored_credentials
from models.accounts.tenants import rotate_api_key
from models.catalog.apps import get_catalog
from models.crypto.secrets import Vault, api_key_matches, generate_encryption_key
from models.db.engine import create_db_engine
from models.db.migrate import upgrade
from models.db.tables import ConnectedAccount, Tenant


@pytest.fixture
def dev_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    monkeypatch.setenv("PASSTHRU_ENCRYPTION_KEYS", generate_encryption_key())
    models.settings.get_settings.cache_clear()
    yield tmp_path
    models.settings.get_settings.cache_clear()


@pytest.fixture
def own_engine(tmp_path: Path) -> Iterator[Engine]:
    """A database of its own: what dev finds there is what the test put."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'dev.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _demo_tenants(engine: Engine, before: set[str]) -> list[Tenant]:
    """The tenants named "demo" made since `before` (the ids there were)."""
    with Session(engine) as session:
        named = session.exec(select(Tenant).where(Tenant.name == "demo")).all()
    return [t for t in named if t.id not in before]


def _ids(engine: Engine) -> set[str]:
    return {t.id for t in _demo_tenants(engine, set())}


def test_after_rotate_key_dev_rekeys_the_same_demo_tenant(dev_state: Path, engine: Engine) -> None:
    # Given dev's demo tenant, whose key `passthru tenants rotate-key` then replaced
    before = _ids(engine)
    said: list[str] = []
    first_key = demo_data.demo_tenant(engine, said.append)
    tenant_id = (dev_state / "demo-tenant-id").read_text().strip()
    rotate_api_key(engine, tenant_id)
    # When dev starts again
    new_key = demo_data.demo_tenant(engine, said.append)
    # Then it issued a new key to the same tenant, kept it, and said so
    assert new_key != first_key
    assert (dev_state / "demo-api-key").read_text().strip() == new_key
    assert (dev_state / "demo-tenant-id").read_text().strip() == tenant_id
    assert [t.id for t in _demo_tenants(engine, before)] == [tenant_id]
    (tenant,) = _demo_tenants(engine, before)
    assert api_key_matches(new_key, tenant.api_key_hash)
    (message,) = said
    assert tenant_id in message
    assert "new one" in message
    # and a run with nothing changed says nothing and keeps the key
    assert demo_data.demo_tenant(engine, said.append) == new_key
    assert len(said) == 1


def test_an_older_dev_state_without_the_tenant_id_finds_its_demo_tenant(
    dev_state: Path, engine: Engine
) -> None:
    # Given the state an older dev kept (a key, no tenant id), whose key was rotated since
    before = _ids(engine)
    demo_data.demo_tenant(engine, print)
    tenant_id = (dev_state / "demo-tenant-id").read_text().strip()
    (dev_state / "demo-tenant-id").unlink()
    rotate_api_key(engine, tenant_id)
    # When dev starts / Then it adopts the first tenant named "demo" (in dev's own database,
    # the one it made; this test database has others' too) and makes no new one
    key = demo_data.demo_tenant(engine, print)
    assert [t.id for t in _demo_tenants(engine, before)] == [tenant_id]
    adopted = (dev_state / "demo-tenant-id").read_text().strip()
    with Session(engine) as session:
        tenant = session.get(Tenant, adopted)
    assert tenant is not None
    assert tenant.name == "demo"
    assert api_key_matches(key, tenant.api_key_hash)


def test_undecryptable_credentials_are_a_warning_naming_the_keys(
    dev_state: Path, own_engine: Engine
) -> None:
    engine = own_engine
    # Given dev's demo account and another account, both written under an old key
    old_key = models.settings.get_settings().encryption_key_list[0]
    old = Vault([old_key])
    demo_data.demo_tenant(engine, print)
    tenant_id = (dev_state / "demo-tenant-id").read_text().strip()
    with Session(engine) as session:
        tenant = session.get(Tenant, tenant_id)
    assert tenant is not None
    other, _, _ = create_account(
        engine,
        tenant,
        get_catalog(),
        old,
        app_slug="demo",
        user_id="someone",
        credentials={"api_key": "theirs"},
        config=None,
    )
    # When dev starts with another key only
    new_key = generate_encryption_key()
    new = Vault([new_key])
    warning = check_stored_credentials(engine, new, tenant_id, "/somewhere/.env")
    # Then it warns, naming the account, where the keys come from and what to do
    assert warning is not None
    assert "\n" not in warning
    assert other.id in warning
    assert "1 stored connected account" in warning
    assert "/somewhere/.env" in warning
    assert "passthru rotate-keys" in warning
    # and the demo account, whose credential dev knows, is readable again
    with Session(engine) as session:
        accounts = session.exec(
            select(ConnectedAccount).where(ConnectedAccount.tenant_id == tenant_id)
        ).all()
    demo = next(a for a in accounts if a.user_id == demo_data.DEMO_USER)
    assert new.decrypt(demo.credentials_enc, bound_to=demo.id) == {"api_key": "demo-secret-key"}
    # and with the old key back, after the new one, there is nothing to say
    both = Vault([new_key, old_key])
    assert check_stored_credentials(engine, both, tenant_id, "x") is None
