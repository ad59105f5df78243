"""Which connected account a call runs as: the one it names, else its user's most recent
active account for the app; a 400 when there is none, or when it is not active."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select

from models.accounts.states import AccountStatus
from models.catalog.apps import App
from models.db.direct import DirectStatement, StatementRunner
from models.db.tables import ConnectedAccount, Tenant
from models.errors import ApiError, ErrorDetail, invalid


@dataclass(frozen=True, slots=True)
class Chosen:
    """What a submission needs of its account: plain values, never its credentials (a
    Core row is cheaper than an ORM object, and the encrypted blob stays in the database)."""

    id: str
    tenant_id: str
    app: str
    user_id: str
    status: AccountStatus
    connection_config: dict[str, Any] | None


# (app, user, account id) -> the account chosen, or why there is none: a batch asks once.
AccountCache = dict[tuple[str, str | None, str | None], Chosen | ApiError]

_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]
# Built once, run with parameters (building a statement costs more CPU than running it),
# on the driver's cursor when the runner is one (models/db/direct.py).
_COLUMNS = select(*[_accounts.c[name] for name in Chosen.__slots__])
_BY_ID = DirectStatement(_COLUMNS.where(_accounts.c.id == bindparam("account_id")))
_LATEST_ACTIVE = DirectStatement(
    _COLUMNS.where(
        _accounts.c.tenant_id == bindparam("tenant_id"),
        _accounts.c.app == bindparam("app"),
        _accounts.c.user_id == bindparam("user_id"),
        _accounts.c.status == AccountStatus.ACTIVE,
    )
    .order_by(_accounts.c.created_at.desc(), _accounts.c.id.desc())
    .limit(1)
)


def _one(db: StatementRunner, query: DirectStatement, params: dict[str, Any]) -> Chosen | None:
    rows = db.rows(query, params)
    if not rows:
        return None
    account_id, tenant_id, app, user_id, status, config = rows[0]
    return Chosen(account_id, tenant_id, app, user_id, AccountStatus(status), config)


def choose_account(
    db: StatementRunner, tenant: Tenant, app: App, user_id: str | None, account_id: str | None
) -> Chosen:
    """The account named by `account_id` (of this tenant, app and user, if a user is given),
    else the user's most recent active account for the app; it must be active."""
    if account_id:
        account = _named_account(db, tenant, app, user_id, account_id)
    else:
        account = _latest_active_account(db, tenant, app, user_id)
    if account.status != AccountStatus.ACTIVE:
        raise ApiError(
            "account_" + account.status,
            [
                ErrorDetail(
                    "connected_account_id",
                    f"account {account.id} is {account.status}; update its credentials "
                    "with PATCH /connected-accounts/{id}",
                )
            ],
        )
    return account


def _named_account(
    db: StatementRunner, tenant: Tenant, app: App, user_id: str | None, account_id: str
) -> Chosen:
    account = _one(db, _BY_ID, {"account_id": account_id})
    if (
        account is None
        or account.tenant_id != tenant.id
        or account.app != app.slug
        or (user_id is not None and account.user_id != user_id)
    ):
        raise ApiError(
            "no_connected_account",
            [
                ErrorDetail(
                    "connected_account_id",
                    f"no connected account {account_id!r} for app {app.slug!r} and this user",
                )
            ],
        )
    return account


def _latest_active_account(
    db: StatementRunner, tenant: Tenant, app: App, user_id: str | None
) -> Chosen:
    if not user_id:
        raise invalid(
            "X-User-ID", "name the end user with the X-User-ID header", "no_connected_account"
        )
    params = {"tenant_id": tenant.id, "app": app.slug, "user_id": user_id}
    account = _one(db, _LATEST_ACTIVE, params)
    if account is None:
        raise ApiError(
            "no_connected_account",
            [
                ErrorDetail(
                    "X-User-ID",
                    f"user {user_id!r} has no active {app.name} account; "
                    "create one with POST /connected-accounts",
                )
            ],
        )
    return account


def account_for(
    db: StatementRunner,
    tenant: Tenant,
    app: App,
    user_id: str | None,
    account_id: str | None,
    cache: AccountCache | None,
) -> Chosen:
    """`choose_account`, remembered in `cache` (when given) across the calls of a batch."""
    if cache is None:
        return choose_account(db, tenant, app, user_id, account_id)
    key = (app.slug, user_id, account_id)
    if key not in cache:
        try:
            cache[key] = choose_account(db, tenant, app, user_id, account_id)
        except ApiError as exc:
            cache[key] = exc
    found = cache[key]
    if isinstance(found, ApiError):
        raise found
    return found
