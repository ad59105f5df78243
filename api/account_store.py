"""Connected accounts, an end user's credentials for one app: stored encrypted (bound to
their row), listed, updated and removed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from models.accounts.credentials import parse_credentials
from models.catalog.apps import App, Catalog
from models.crypto.secrets import Vault
from models.db.engine import session_scope, utcnow
from models.db.ids import new_id
from models.db.tables import ConnectedAccount, Tenant
from models.errors import invalid, not_found


def _app(catalog: Catalog, slug: str) -> App:
    app = catalog.get(slug)
    if app is None:
        raise invalid("app", f"no app {slug!r}; GET /apps lists them", "unknown_app")
    return app


def _check_config(app: App, config: dict[str, Any] | None) -> None:
    try:
        app.resolve(config)
    except ValueError as exc:
        raise invalid("connection_config", str(exc)) from exc


def create_account(
    engine: Engine,
    tenant: Tenant,
    catalog: Catalog,
    vault: Vault,
    *,
    app_slug: str,
    user_id: str | None,
    credentials: dict[str, Any],
    config: dict[str, Any] | None,
) -> ConnectedAccount:
    if not user_id:
        raise invalid("X-User-ID", "name the end user with the X-User-ID header")
    app = _app(catalog, app_slug)
    creds = parse_credentials(app, credentials)
    _check_config(app, config)
    account_id = new_id("ca")
    account = ConnectedAccount(
        id=account_id,
        tenant_id=tenant.id,
        app=app.slug,
        user_id=user_id,
        credentials_enc=vault.encrypt(creds.model_dump(exclude_none=True), bound_to=account_id),
        connection_config=config,
    )
    with session_scope(engine) as session:
        session.add(account)
    return account


def get_account(session: Session, tenant: Tenant, account_id: str) -> ConnectedAccount:
    account = session.get(ConnectedAccount, account_id)
    if account is None or account.tenant_id != tenant.id:
        raise not_found("connected account", account_id)
    return account


def list_accounts(
    engine: Engine, tenant: Tenant, app: str | None, user_id: str | None, status: str | None
) -> list[ConnectedAccount]:
    query = select(ConnectedAccount).where(col(ConnectedAccount.tenant_id) == tenant.id)
    if app:
        query = query.where(col(ConnectedAccount.app) == app)
    if user_id:
        query = query.where(col(ConnectedAccount.user_id) == user_id)
    if status:
        query = query.where(col(ConnectedAccount.status) == status)
    with Session(engine) as session:
        return list(session.exec(query.order_by(col(ConnectedAccount.created_at).desc())))


def update_account(
    engine: Engine,
    tenant: Tenant,
    catalog: Catalog,
    vault: Vault,
    account_id: str,
    *,
    credentials: dict[str, Any] | None,
    config: dict[str, Any] | None,
    status: str | None = None,
) -> ConnectedAccount:
    """New credentials (which clear `needs_reauth`) with a new config if any, and/or status.
    The config names the account's host (`{subdomain}`), so it never changes alone: the
    credentials stored for one host must not follow the account to another."""
    if config is not None and credentials is None:
        raise invalid(
            "connection_config",
            "changes only together with new credentials: send both in `credentials` and "
            "`connection_config`",
        )
    with session_scope(engine) as session:
        account = get_account(session, tenant, account_id)
        app = _app(catalog, account.app)
        if credentials is not None:
            creds = parse_credentials(app, credentials)
            account.credentials_enc = vault.encrypt(
                creds.model_dump(exclude_none=True), bound_to=account.id
            )
            if account.status == "needs_reauth":
                account.status = "active"
        if config is not None:
            _check_config(app, config)
            account.connection_config = config
        if status == "active" and account.status == "needs_reauth":
            raise invalid(
                "status",
                "the account needs new credentials: send them in `credentials`",
                "account_needs_reauth",
            )
        if status is not None:
            account.status = status
        account.updated_at = utcnow()
        session.add(account)
        return account


def delete_account(engine: Engine, tenant: Tenant, account_id: str) -> None:
    with session_scope(engine) as session:
        session.delete(get_account(session, tenant, account_id))
