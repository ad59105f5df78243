"""Connected accounts, an end user's credentials for one app: stored encrypted (bound to
their row), updated and removed (listed a page at a time by `api/account_pages.py`)."""

from __future__ import annotations

import hmac
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from api.account_cap import AccountCap
from api.suggestions import unknown_app
from models.accounts.credentials import ClientCredentials, ClientToken, parse_credentials
from models.accounts.states import ACCOUNTS, AccountStatus
from models.catalog.apps import App, Catalog
from models.crypto.secrets import Vault
from models.db.engine import session_scope, utcnow
from models.db.ids import new_id
from models.db.tables import ConnectedAccount, Tenant
from models.errors import ApiError, CredentialsError, ErrorDetail, invalid, not_found
from models.webhooks.outbox import enqueue_account_event

# Most of a user's accounts for one app compared with credentials posted again.
CANDIDATES = 100
# What passthru keeps beside a client's own credentials (the token it fetched for them).
_FETCHED_BY_PASSTHRU = frozenset(ClientToken.model_fields) - frozenset(
    ClientCredentials.model_fields
)


class NewAccount(NamedTuple):
    """What `create_account` did: the account, whether it is new (else it already held
    these credentials), and the webhook deliveries to publish."""

    account: ConnectedAccount
    created: bool
    events: list[str]


def known_app(catalog: Catalog, slug: str) -> App:
    app = catalog.get(slug)
    if app is None:
        raise unknown_app(slug, catalog, status_code=400, lists_them="GET /apps")
    return app


def check_config(app: App, config: dict[str, Any] | None) -> None:
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
    source: str = "api",
    cap: AccountCap | None = None,
) -> NewAccount:
    """The user's account for these credentials and config, whether it is new, and the ids
    of the webhook deliveries to publish. The same credentials posted again find the account
    that holds them instead of a twin; a new account connected on a connect page gets its
    `connection.created` event, in the same transaction. A tenant at `cap` gets a 403 for a
    new account (the twin is still found)."""
    if not user_id:
        raise invalid("X-User-ID", "name the end user with the X-User-ID header")
    app = known_app(catalog, app_slug)
    secret = parse_credentials(app, credentials).model_dump(exclude_none=True)
    check_config(app, config)
    with Session(engine) as session:
        twin = _holder_of(session, vault, (tenant.id, app.slug, user_id), secret, config)
    if twin is not None:
        return NewAccount(twin, False, [])
    if cap is not None:
        cap.check(tenant.id)
    account_id = new_id("ca")
    account = ConnectedAccount(
        id=account_id,
        tenant_id=tenant.id,
        app=app.slug,
        user_id=user_id,
        credentials_enc=vault.encrypt(secret, bound_to=account_id),
        connection_config=config,
        source=source,
    )
    events: list[str] = []
    with session_scope(engine) as session:
        session.add(account)
        if source != "api":
            session.flush()
            events = enqueue_account_event(session.connection(), account, utcnow())
    if cap is not None:
        cap.added(tenant.id)
    return NewAccount(account, True, events)


def _holder_of(
    session: Session,
    vault: Vault,
    owner: tuple[str, str, str],
    secret: dict[str, Any],
    config: dict[str, Any] | None,
) -> ConnectedAccount | None:
    """The oldest of the user's accounts for the app that holds exactly `secret` and
    `config`, among their active ones; for a client's credentials, without the token passthru
    fetched and keeps beside them. Plaintext is compared in memory
    only: each candidate is decrypted (at most CANDIDATES: a user's accounts for one app are
    few), never a hash of the secret stored beside it."""
    tenant_id, app, user_id = owner
    candidates = session.exec(
        select(ConnectedAccount)
        .where(
            col(ConnectedAccount.tenant_id) == tenant_id,
            col(ConnectedAccount.app) == app,
            col(ConnectedAccount.user_id) == user_id,
            col(ConnectedAccount.status) == AccountStatus.ACTIVE,
        )
        .order_by(col(ConnectedAccount.created_at), col(ConnectedAccount.id))
        .limit(CANDIDATES)
    ).all()
    for account in candidates:
        if (account.connection_config or None) != (config or None):
            continue
        try:
            held = vault.decrypt(account.credentials_enc, bound_to=account.id)
        except CredentialsError:
            continue  # under a key no longer configured, or copied from another row
        if secret.get("type") == "client_credentials":
            held = {k: v for k, v in held.items() if k not in _FETCHED_BY_PASSTHRU}
        if hmac.compare_digest(_canonical(held), _canonical(secret)):
            return account
    return None


def _canonical(secret: dict[str, Any]) -> bytes:
    """One byte string per value: keys sorted, datetimes as the vault stores them."""
    return orjson.dumps(secret, option=orjson.OPT_SORT_KEYS)


def get_account(session: Session, tenant: Tenant, account_id: str) -> ConnectedAccount:
    account = session.get(ConnectedAccount, account_id)
    if account is None or account.tenant_id != tenant.id:
        raise not_found("connected account", account_id)
    return account


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
    """New credentials (which clear `needs_reauth`) with a new config if any, and/or status
    (`active` or `disabled`, as the schema allows). The config names the account's host
    (`{subdomain}`), so it never changes alone: the credentials stored for one host must not
    follow the account to another."""
    if config is not None and credentials is None:
        raise invalid(
            "connection_config",
            "changes only together with new credentials: send both in `credentials` and "
            "`connection_config`",
        )
    with session_scope(engine) as session:
        account = get_account(session, tenant, account_id)
        app = known_app(catalog, account.app)
        values: dict[str, Any] = {}
        if credentials is not None:
            creds = parse_credentials(app, credentials)
            values["credentials_enc"] = vault.encrypt(
                creds.model_dump(exclude_none=True), bound_to=account.id
            )
        if config is not None:
            check_config(app, config)
            values["connection_config"] = config
        asked = None if status is None else AccountStatus(status)
        target = _status_after(account.status, asked, renewed=credentials is not None)
        _store(session, account, target, {**values, "updated_at": utcnow()})
        return account


def _status_after(
    current: AccountStatus, asked: AccountStatus | None, *, renewed: bool
) -> AccountStatus:
    """The status a PATCH leaves: the one asked for, else `active` for a `needs_reauth`
    account given new credentials (the only way out of it to `active`), else `current`."""
    if asked == AccountStatus.ACTIVE and current == AccountStatus.NEEDS_REAUTH and not renewed:
        raise invalid(
            "status",
            "the account needs new credentials: send them in `credentials`",
            "account_needs_reauth",
        )
    if asked is not None:
        return asked
    return AccountStatus.ACTIVE if renewed and current == AccountStatus.NEEDS_REAUTH else current


def _store(
    session: Session, account: ConnectedAccount, target: AccountStatus, values: dict[str, Any]
) -> None:
    """Write `values` and move the account to `target`, both only if its status is still the
    one this request read (a worker may have revoked its credentials meanwhile): else 409."""
    this = col(ConnectedAccount.id) == account.id
    if target == account.status:
        stmt = update(ConnectedAccount).where(this, col(ConnectedAccount.status) == target)
    else:
        stmt = ACCOUNTS.update(ConnectedAccount, target, this, current=account.status)
    if session.exec(stmt.values(**values)).rowcount != 1:
        raise ApiError(
            "account_changed",
            [ErrorDetail("id", f"account {account.id} changed meanwhile; send the request again")],
            409,
        )
    session.refresh(account)


def delete_account(engine: Engine, tenant: Tenant, account_id: str) -> None:
    with session_scope(engine) as session:
        session.delete(get_account(session, tenant, account_id))
