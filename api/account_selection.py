"""Which connected account a call runs as: the one it names, else its user's most recent
active account for the app; a 400 when there is none, or when it is not active."""

from __future__ import annotations

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from models.accounts.states import AccountStatus
from models.catalog.apps import App
from models.db.tables import ConnectedAccount, Tenant
from models.errors import ApiError, ErrorDetail, invalid

# (app, user, account id) -> the account chosen, or why there is none: a batch asks once.
AccountCache = dict[tuple[str, str | None, str | None], ConnectedAccount | ApiError]


def choose_account(
    session: Session, tenant: Tenant, app: App, user_id: str | None, account_id: str | None
) -> ConnectedAccount:
    """The account named by `account_id` (of this tenant, app and user, if a user is given),
    else the user's most recent active account for the app; it must be active."""
    if account_id:
        account = _named_account(session, tenant, app, user_id, account_id)
    else:
        account = _latest_active_account(session, tenant, app, user_id)
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
    session: Session, tenant: Tenant, app: App, user_id: str | None, account_id: str
) -> ConnectedAccount:
    account = session.get(ConnectedAccount, account_id)
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


# Built once, run with parameters (building it cost more CPU than running it).
_LATEST_ACTIVE = (
    select(ConnectedAccount)
    .where(
        col(ConnectedAccount.tenant_id) == bindparam("tenant_id"),
        col(ConnectedAccount.app) == bindparam("app"),
        col(ConnectedAccount.user_id) == bindparam("user_id"),
        col(ConnectedAccount.status) == AccountStatus.ACTIVE,
    )
    .order_by(col(ConnectedAccount.created_at).desc(), col(ConnectedAccount.id).desc())
    .limit(1)
)


def _latest_active_account(
    session: Session, tenant: Tenant, app: App, user_id: str | None
) -> ConnectedAccount:
    if not user_id:
        raise invalid(
            "X-User-ID", "name the end user with the X-User-ID header", "no_connected_account"
        )
    account = session.exec(
        _LATEST_ACTIVE, params={"tenant_id": tenant.id, "app": app.slug, "user_id": user_id}
    ).first()
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
    session: Session,
    tenant: Tenant,
    app: App,
    user_id: str | None,
    account_id: str | None,
    cache: AccountCache | None,
) -> ConnectedAccount:
    """`choose_account`, remembered in `cache` (when given) across the calls of a batch."""
    if cache is None:
        return choose_account(session, tenant, app, user_id, account_id)
    key = (app.slug, user_id, account_id)
    if key not in cache:
        try:
            cache[key] = choose_account(session, tenant, app, user_id, account_id)
        except ApiError as exc:
            cache[key] = exc
    found = cache[key]
    if isinstance(found, ApiError):
        raise found
    return found
