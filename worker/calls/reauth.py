"""An account whose token endpoint refused it (a revoked refresh token, a refused client):
`needs_reauth`, and its waiting calls end `failed` with `credentials_revoked`."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Engine

from models.accounts.states import ACCOUNTS, AccountStatus
from models.calls.states import CALLS, WAITING, CallStatus
from models.db.tables import ConnectedAccount, FunctionCall
from models.webhooks.outbox import enqueue_deliveries

log = logging.getLogger("passthru.oauth")

_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]
_calls = FunctionCall.__table__  # type: ignore[attr-defined]


def needs_reauth(
    engine: Engine, account_id: str, revoked: str, why: str, now: datetime
) -> list[str] | None:
    """The account needs its user again and its waiting calls cannot run (`why` says so in
    their error message): the ids of the calls failed. None, and nothing done, if its
    credentials changed since `revoked` was read (new ones are not revoked), or it is
    `needs_reauth` already (ACCOUNTS has no such move)."""
    with engine.begin() as conn:
        marked = conn.execute(
            ACCOUNTS.update(
                _accounts,
                AccountStatus.NEEDS_REAUTH,
                _accounts.c.id == account_id,
                _accounts.c.credentials_enc == revoked,
            )
        ).rowcount
        if not marked:
            return None
        failed = [
            row[0]
            for row in conn.execute(
                CALLS.update(
                    _calls,
                    CallStatus.FAILED,
                    _calls.c.connected_account_id == account_id,
                    current=WAITING,
                )
                .values(
                    error="credentials_revoked",
                    error_message=f"{why}; update the account with "
                    "PATCH /connected-accounts/{id}",
                    finished_at=now,
                    next_attempt_at=None,
                )
                .returning(_calls.c.id)
            )
        ]
        enqueue_deliveries(conn, failed, now, published=False)  # the sweeper sends them
    log.warning(
        "account %s: %s; needs_reauth, %d waiting calls failed", account_id, why, len(failed)
    )
    return failed
