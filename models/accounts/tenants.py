"""Creating tenants and replacing their API keys. A key is returned once and stored only as
a hash."""

from __future__ import annotations

from sqlalchemy import Engine, update
from sqlmodel import col

from models.crypto.secrets import hash_api_key, new_api_key
from models.db.engine import session_scope
from models.db.ids import new_id
from models.db.tables import Tenant
from models.errors import ConfigError

# The longest tenant name (its column's length).
MAX_NAME_CHARS = 200


def check_name(name: str) -> str:
    """A tenant name the database stores: 1 to 200 printable characters."""
    if not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise ConfigError(
            f"a tenant name is 1 to {MAX_NAME_CHARS} printable characters; got {len(name)}"
        )
    return name


def create_tenant(engine: Engine, name: str, api_key: str | None = None) -> tuple[Tenant, str]:
    check_name(name)
    key = api_key or new_api_key()
    tenant = Tenant(
        id=new_id("tn"), name=name, api_key_hash=hash_api_key(key), api_key_prefix=key[:8]
    )
    with session_scope(engine) as session:
        session.add(tenant)
    return tenant, key


def rotate_api_key(engine: Engine, tenant_id: str) -> str:
    """A new API key for the tenant; the old one stops working (within the API's 10 s cache
    of verified keys). Raises LookupError for an unknown tenant."""
    key = new_api_key()
    with session_scope(engine) as session:
        changed = session.exec(
            update(Tenant)
            .where(col(Tenant.id) == tenant_id)
            .values(api_key_hash=hash_api_key(key), api_key_prefix=key[:8])
        ).rowcount
    if changed != 1:
        raise LookupError(f"no tenant {tenant_id!r}")
    return key
