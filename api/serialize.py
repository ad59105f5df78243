"""Rows -> API resources (a call's own, shared with webhook events, are in
`models/calls/resources.py`)."""

from __future__ import annotations

from api.schemas import AccountOut
from models.db.tables import ConnectedAccount


def account_out(account: ConnectedAccount) -> AccountOut:
    return AccountOut(
        id=account.id,
        app=account.app,
        user_id=account.user_id,
        status=account.status,
        connection_config=account.connection_config,
        created_at=account.created_at,
        updated_at=account.updated_at,
        last_used_at=account.last_used_at,
    )
