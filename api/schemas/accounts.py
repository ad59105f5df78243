"""`/connected-accounts`: an end user's credentials for one app (never shown back)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from api.schemas.common import APP_CHARS, StrictIn
from models.db.tables import ConnectedAccount

# connection_config: a few short scalar values (template values must also be DNS labels).
CONFIG_ENTRIES = 20
CONFIG_KEY_CHARS = 64
CONFIG_VALUE_CHARS = 255
ConnectionConfig = dict[
    Annotated[str, StringConstraints(max_length=CONFIG_KEY_CHARS)],
    Annotated[str, StringConstraints(max_length=CONFIG_VALUE_CHARS)] | int | float | bool | None,
]


class AccountIn(StrictIn):
    app: str = Field(max_length=APP_CHARS)
    credentials: dict[str, Any]
    connection_config: ConnectionConfig | None = Field(default=None, max_length=CONFIG_ENTRIES)


class AccountPatch(StrictIn):
    credentials: dict[str, Any] | None = Field(
        default=None, description="New credentials; they also clear `needs_reauth`"
    )
    connection_config: ConnectionConfig | None = Field(
        default=None,
        max_length=CONFIG_ENTRIES,
        description="Changes only together with new `credentials`",
    )
    status: Literal["active", "disabled"] | None = Field(
        default=None,
        description="`disabled`: its calls are refused (and waiting ones fail) until `active`",
    )


class AccountOut(BaseModel):
    id: str
    app: str
    user_id: str
    status: str
    connection_config: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    source: str = Field(description="How it was connected: `api` or `connect_page`")

    @classmethod
    def of(cls, account: ConnectedAccount) -> AccountOut:
        """The account as the API shows it: never its credentials."""
        return cls(
            id=account.id,
            app=account.app,
            user_id=account.user_id,
            status=account.status,
            connection_config=account.connection_config,
            created_at=account.created_at,
            updated_at=account.updated_at,
            last_used_at=account.last_used_at,
            source=account.source,
        )


class AccountList(BaseModel):
    """A page of accounts, newest first."""

    items: list[AccountOut]
    next_cursor: str | None = Field(
        description="the `cursor` of the next page; null on the last page"
    )
