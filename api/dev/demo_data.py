"""The database `passthru dev` serves: migrated, with a demo tenant (its API key kept in
`.passthru/demo-api-key`) whose user `demo-user` has an account on the demo app."""

from __future__ import annotations

import os

from sqlalchemy import Engine

from api.dev import state
from api.dev.demo_upstream import DEMO_API_KEY

DEMO_USER = "demo-user"


def prepare_database(env: dict[str, str]) -> str:
    """Migrate the database of `env` (applied to this process's environment), then make
    sure the demo tenant and account exist; return the demo API key."""
    os.environ.update(env)
    from models.db.engine import get_engine
    from models.db.migrate import upgrade
    from models.settings import get_settings

    get_settings.cache_clear()
    get_engine.cache_clear()
    engine = get_engine()
    upgrade(engine)
    return demo_tenant(engine)


def demo_tenant(engine: Engine) -> str:
    """The demo tenant's API key: the one kept in `.passthru/` while it still names a
    tenant, else a new tenant's; and a demo account for DEMO_USER unless it has one."""
    from sqlmodel import Session, select

    from api.account_store import create_account
    from models.accounts.tenants import create_tenant
    from models.catalog.apps import get_catalog
    from models.crypto.secrets import hash_api_key, vault_for
    from models.db.tables import ConnectedAccount, Tenant
    from models.settings import get_settings

    key_file = state.STATE_DIR / "demo-api-key"
    key = key_file.read_text().strip() if key_file.exists() else None
    with Session(engine) as session:
        tenant = (
            session.exec(select(Tenant).where(Tenant.api_key_hash == hash_api_key(key))).first()
            if key
            else None
        )
    if tenant is None or key is None:
        tenant, key = create_tenant(engine, "demo")
        state.write_secret(key_file, key)
    with Session(engine) as session:
        has_account = session.exec(
            select(ConnectedAccount).where(
                ConnectedAccount.tenant_id == tenant.id, ConnectedAccount.app == "demo"
            )
        ).first()
    if has_account is None:
        settings = get_settings()
        create_account(
            engine,
            tenant,
            get_catalog(),
            vault_for(tuple(settings.encryption_key_list)),
            app_slug="demo",
            user_id=DEMO_USER,
            credentials={"api_key": DEMO_API_KEY},
            config=None,
        )
    return key
