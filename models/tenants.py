"""Creating tenants. The API key is returned once and stored only as a hash."""

from __future__ import annotations

from sqlalchemy import Engine

from models.db import session_scope
from models.ids import new_id
from models.secrets import hash_api_key, new_api_key
from models.tables import Tenant


def create_tenant(engine: Engine, name: str, api_key: str | None = None) -> tuple[Tenant, str]:
    key = api_key or new_api_key()
    tenant = Tenant(
        id=new_id("tn"), name=name, api_key_hash=hash_api_key(key), api_key_prefix=key[:8]
    )
    with session_scope(engine) as session:
        session.add(tenant)
    return tenant, key
