"""A tenant's connected accounts a page at a time, newest first: what `GET
/connected-accounts`, `GET /rate-limits` and the console's pages read. Paging is by keyset,
as the log's: a page's cursor is the position of its last account, `(created_at, id)`, and
the next page is the accounts before it, sought in an index that leads with the tenant
(and the filter's column) and ends with `(created_at, id)` (migration 0014)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Engine, tuple_
from sqlmodel import col, select

from models.db.engine import read_session
from models.db.tables import ConnectedAccount, Tenant
from models.errors import invalid

# Accounts on a page unless the caller's `limit` says otherwise, and the most it may ask for.
PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
# Longest cursor taken: the ones handed out are at most 80 characters (a time and an id).
MAX_CURSOR_CHARS = 128
# What a cursor holds once decoded: microseconds since the epoch, a dot, the account's id.
_POSITION = re.compile(r"(-?[0-9]{1,18})\.([0-9A-Za-z_-]{1,40})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class AccountFilter:
    app: str | None = None
    user_id: str | None = None
    status: str | None = None


class AccountPage(NamedTuple):
    """A page of accounts, and the cursor of the next one (None on the last page)."""

    accounts: list[ConnectedAccount]
    next_cursor: str | None


def list_accounts(
    engine: Engine,
    tenant: Tenant,
    filters: AccountFilter,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
) -> AccountPage:
    """The tenant's `limit` newest accounts that pass `filters`, from after `cursor` on.
    Newer accounts sort before every cursor handed out, so inserts never shift a page; a
    cursor names a position, not an account, so deleting its account does not break it."""
    query = select(ConnectedAccount).where(col(ConnectedAccount.tenant_id) == tenant.id)
    if filters.app:
        query = query.where(col(ConnectedAccount.app) == filters.app)
    if filters.user_id:
        query = query.where(col(ConnectedAccount.user_id) == filters.user_id)
    if filters.status:
        query = query.where(col(ConnectedAccount.status) == filters.status)
    if cursor is not None:
        created_at, account_id = position_of(cursor)
        query = query.where(
            tuple_(col(ConnectedAccount.created_at), col(ConnectedAccount.id))
            < tuple_(created_at, account_id)
        )
    query = query.order_by(
        col(ConnectedAccount.created_at).desc(), col(ConnectedAccount.id).desc()
    ).limit(limit + 1)
    with read_session(engine) as session:
        rows = list(session.exec(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return AccountPage(rows, cursor_of(rows[-1]) if more and rows else None)


def cursor_of(account: ConnectedAccount) -> str:
    """The opaque cursor of the accounts after `account`: its position, base64url."""
    micros = (account.created_at - _EPOCH) // _MICROSECOND
    raw = f"{micros}.{account.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def position_of(cursor: str) -> tuple[datetime, str]:
    """The `(created_at, id)` a cursor of `cursor_of` holds; anything else (made up, cut,
    altered past decoding, too long) is a 400 naming `cursor`. A cursor that decodes names
    a position only: the tenant's filter still applies, so it shows nothing of another's."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        found = _POSITION.fullmatch(raw.decode("ascii"))
        if found is None:
            raise ValueError
        return _EPOCH + int(found[1]) * _MICROSECOND, found[2]
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError):
        raise invalid(
            "cursor", "not a cursor this list gave; leave it out to start from the first page"
        ) from None
