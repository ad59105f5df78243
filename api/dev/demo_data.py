"""The database `passthru dev` serves: migrated, with a demo tenant whose user `demo-user` has
an account on the demo app. The tenant is found by its id, kept in `.passthru/demo-tenant-id`;
its API key is kept in `.passthru/demo-api-key`. When that key no longer opens the tenant
(`passthru tenants rotate-key` gave it another), dev issues a new key for the same tenant,
and says so: its calls, accounts and webhooks stay where they were."""

from __future__ import annotations

import os
from collections.abc import Callable

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from api.dev import state
from api.dev.demo_upstream import DEMO_API_KEY
from models.db.tables import ConnectedAccount, Tenant

DEMO_USER = "demo-user"
DEMO_TENANT_NAME = "demo"


def prepare_database(
    env: dict[str, str], keys_from: str, say: Callable[[str], None] = print
) -> str:
    """Migrate the database of `env` (applied to this process's environment), make sure
    the demo tenant and account exist, and warn (`say`) about stored credentials the keys
    (read from `keys_from`) cannot open; return the demo API key."""
    os.environ.update(env)
    from models.db.engine import get_engine
    from models.db.migrate import upgrade
    from models.settings import get_settings

    get_settings.cache_clear()
    get_engine.cache_clear()
    engine = get_engine()
    upgrade(engine)
    key = demo_tenant(engine, say)
    from api.dev.stored_keys import check_stored_credentials
    from models.crypto.secrets import vault_for

    vault = vault_for(tuple(get_settings().encryption_key_list))
    demo_id = (state.STATE_DIR / "demo-tenant-id").read_text().strip()
    warning = check_stored_credentials(engine, vault, demo_id, keys_from)
    if warning:
        say(warning)
    return key


def _find_tenant(engine: Engine, tenant_id: str | None, key: str | None) -> Tenant | None:
    """The demo tenant: by its kept id; with a key but no id (kept by an older passthru
    dev), the tenant of that key, else the first tenant named "demo"."""
    from models.crypto.secrets import hash_api_key

    with Session(engine) as session:
        if tenant_id:
            return session.get(Tenant, tenant_id)
        if not key:
            return None
        found = session.exec(select(Tenant).where(Tenant.api_key_hash == hash_api_key(key)))
        if (tenant := found.first()) is not None:
            return tenant
        named = select(Tenant).where(Tenant.name == DEMO_TENANT_NAME)
        return session.exec(named.order_by(col(Tenant.created_at))).first()


def demo_tenant(engine: Engine, say: Callable[[str], None] = print) -> str:
    """The demo tenant's API key (a new tenant the first time), and a demo account for
    DEMO_USER unless it has one."""
    from models.accounts.tenants import create_tenant, rotate_api_key
    from models.crypto.secrets import api_key_matches

    id_file = state.STATE_DIR / "demo-tenant-id"
    key_file = state.STATE_DIR / "demo-api-key"
    tenant_id = id_file.read_text().strip() if id_file.exists() else None
    key = key_file.read_text().strip() if key_file.exists() else None
    tenant = _find_tenant(engine, tenant_id, key)
    if tenant is None:
        tenant, key = create_tenant(engine, DEMO_TENANT_NAME)
        state.write_secret(key_file, key)
    elif key is None or not api_key_matches(key, tenant.api_key_hash):
        key = rotate_api_key(engine, tenant.id)
        state.write_secret(key_file, key)
        say(
            f"the demo tenant {tenant.id} has another API key than {key_file} held (after "
            "`passthru tenants rotate-key`?): issued it a new one, printed below; its calls "
            "and accounts are unchanged"
        )
    if tenant_id != tenant.id:
        state.write_secret(id_file, tenant.id)
    _demo_account(engine, tenant)
    return key


def _demo_account(engine: Engine, tenant: Tenant) -> None:
    from api.account_store import create_account
    from models.catalog.apps import get_catalog
    from models.crypto.secrets import vault_for
    from models.settings import get_settings

    with Session(engine) as session:
        has_account = session.exec(
            select(ConnectedAccount).where(
                ConnectedAccount.tenant_id == tenant.id, ConnectedAccount.app == "demo"
            )
        ).first()
    if has_account is None:
        create_account(
            engine,
            tenant,
            get_catalog(),
            vault_for(tuple(get_settings().encryption_key_list)),
            app_slug="demo",
            user_id=DEMO_USER,
            credentials={"api_key": DEMO_API_KEY},
            config=None,
        )
