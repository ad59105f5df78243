"""Creating, listing and naming tenants and replacing their API keys. A key is returned once
and stored only as a hash, and never listed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select, update
from sqlmodel import Session, col

from models.crypto.secrets import hash_api_key, new_api_key
from models.db.engine import session_scope
from models.db.ids import new_id
from models.db.tables import FunctionCall, Tenant
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


def create_tenant(
    engine: Engine, name: str, api_key: str | None = None, *, unique: bool = False
) -> tuple[Tenant, str]:
    """A new tenant and its API key; with `unique`, refused (ConfigError) when a tenant of
    that name exists already."""
    check_name(name)
    if unique:
        with Session(engine) as session:
            taken = session.execute(select(col(Tenant.id)).where(col(Tenant.name) == name)).scalar()
        if taken is not None:
            raise ConfigError(
                f"a tenant named {name!r} exists already ({taken}): choose another name, "
                "or `passthru tenants rotate-key ID` for a new key of that one"
            )
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


@dataclass(frozen=True)
class TenantSummary:
    """What `passthru tenants list` shows of a tenant: never its key."""

    id: str
    name: str
    created_at: datetime
    last_call_at: datetime | None


def list_tenants(engine: Engine) -> list[TenantSummary]:
    """Every tenant, oldest first, with when it last submitted a call (of the calls still
    kept: PASSTHRU_RETENTION_DAYS)."""
    # The newest call by the (tenant_id, id) index: ids are time-ordered.
    last = (
        select(col(FunctionCall.created_at))
        .where(col(FunctionCall.tenant_id) == col(Tenant.id))
        .order_by(col(FunctionCall.id).desc())
        .limit(1)
        .correlate(Tenant)
        .scalar_subquery()
    )
    query = select(col(Tenant.id), col(Tenant.name), col(Tenant.created_at), last).order_by(
        col(Tenant.created_at), col(Tenant.id)
    )
    with Session(engine) as session:
        rows = session.execute(query).all()
    return [TenantSummary(*row) for row in rows]
