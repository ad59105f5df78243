"""Dependencies for route handlers, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request
from pydantic import AfterValidator
from sqlalchemy import Engine

from api.account_cap import AccountCap
from api.account_pages import MAX_PAGE_SIZE
from api.auth import Authenticator, remembered
from api.intake import Intake
from api.quotas import Quotas
from api.schemas.common import USER_ID_CHARS
from api.submit_headers import as_utf8
from api.waiter import CallWaiter
from models.broker import Publisher
from models.catalog.apps import App, Catalog
from models.catalog.spec import CATEGORIES
from models.crypto.secrets import Vault
from models.db.tables import Tenant
from models.errors import invalid
from models.settings import Settings


async def get_engine_dep(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_catalog_dep(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


async def get_waiter(request: Request) -> CallWaiter:
    waiter: CallWaiter = request.app.state.waiter
    return waiter


async def get_publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


async def get_account_cap(request: Request) -> AccountCap:
    cap: AccountCap = request.app.state.accounts
    return cap


async def get_quotas(request: Request) -> Quotas:
    quotas: Quotas = request.app.state.quotas
    return quotas


async def get_intake(request: Request) -> Intake:
    return Intake.of(request.app.state)


async def current_tenant(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Tenant:
    """The tenant `RequestLimits` found before reading the body, or the header's own."""
    tenant = remembered(request.scope)
    if tenant is None:
        auth: Authenticator = request.app.state.auth
        tenant = await auth.tenant_for(authorization)
    return tenant


# The longest search text `GET /apps?q=` and `GET /functions?q=` take.
MAX_QUERY_CHARS = 100


async def matching_apps(
    catalog: Annotated[Catalog, Depends(get_catalog_dep)],
    category: Annotated[str | None, Query(description=", ".join(CATEGORIES))] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=MAX_QUERY_CHARS,
            description="text in the app's slug, name or description (any case)",
        ),
    ] = None,
) -> list[App]:
    """The catalog's apps that a listing's `category` and `q` select."""
    if category is not None and category not in CATEGORIES:
        raise invalid("category", f"must be one of {', '.join(CATEGORIES)}")
    return catalog.matching(category, q)


EngineDep = Annotated[Engine, Depends(get_engine_dep)]
CatalogDep = Annotated[Catalog, Depends(get_catalog_dep)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
VaultDep = Annotated[Vault, Depends(get_vault)]
WaiterDep = Annotated[CallWaiter, Depends(get_waiter)]
QuotasDep = Annotated[Quotas, Depends(get_quotas)]
AccountCapDep = Annotated[AccountCap, Depends(get_account_cap)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
IntakeDep = Annotated[Intake, Depends(get_intake)]
CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
UserIdHeader = Annotated[
    str | None,
    Header(alias="X-User-ID", max_length=USER_ID_CHARS),
    AfterValidator(lambda v: None if v is None else as_utf8(v)),
]
MatchingApps = Annotated[list[App], Depends(matching_apps)]
# A page of the tenant's accounts (`GET /connected-accounts`, `GET /rate-limits`).
AccountsCursor = Annotated[
    str | None, Query(description="`next_cursor` of the previous page; none for the first")
]
AccountsLimit = Annotated[
    int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"accounts a page holds (1 to {MAX_PAGE_SIZE})")
]
