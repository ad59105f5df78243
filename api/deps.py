"""Dependencies for route handlers, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import Engine
from sqlmodel import Session, select

from api.waiter import CallWaiter
from models.catalog import Catalog
from models.errors import ApiError, ErrorDetail
from models.secrets import Vault, hash_api_key
from models.settings import Settings
from models.tables import Tenant


def get_engine_dep(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


def get_catalog_dep(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


def get_waiter(request: Request) -> CallWaiter:
    waiter: CallWaiter = request.app.state.waiter
    return waiter


def _unauthorized(message: str) -> ApiError:
    return ApiError("unauthorized", [ErrorDetail("Authorization", message)], 401)


def current_tenant(
    session: Annotated[Session, Depends(get_session)],
    authorization: Annotated[str | None, Header()] = None,
) -> Tenant:
    if not authorization:
        raise _unauthorized("send 'Authorization: Bearer <API key>'")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise _unauthorized("use the Bearer scheme: 'Authorization: Bearer <API key>'")
    tenant = session.exec(
        select(Tenant).where(Tenant.api_key_hash == hash_api_key(key.strip()))
    ).first()
    if tenant is None:
        raise _unauthorized("this API key is not valid")
    return tenant


EngineDep = Annotated[Engine, Depends(get_engine_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
CatalogDep = Annotated[Catalog, Depends(get_catalog_dep)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
VaultDep = Annotated[Vault, Depends(get_vault)]
WaiterDep = Annotated[CallWaiter, Depends(get_waiter)]
CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
UserIdHeader = Annotated[str | None, Header(alias="X-User-ID")]
