"""Bodies of `POST /connect-sessions`: the link a tenant sends its end user to."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from api.schemas.accounts import CONFIG_ENTRIES, ConnectionConfig
from api.schemas.common import APP_CHARS, ID_CHARS, USER_ID_CHARS, StrictIn
from models.net.urls import MAX_CALLBACK_URL_CHARS

# Scopes asked for instead of the catalog's: at most this many, each at most this long.
MAX_SCOPES = 50
SCOPE_CHARS = 200


class ConnectSessionIn(StrictIn):
    app: str = Field(max_length=APP_CHARS)
    redirect_url: str = Field(
        max_length=MAX_CALLBACK_URL_CHARS,
        description="Where the end user's browser goes afterwards: https, or http to loopback",
    )
    user_id: str | None = Field(
        default=None, min_length=1, max_length=USER_ID_CHARS, description="Else X-User-ID"
    )
    scopes: list[Annotated[str, StringConstraints(min_length=1, max_length=SCOPE_CHARS)]] | None = (
        Field(default=None, max_length=MAX_SCOPES, description="Instead of the app's own")
    )
    connection_config: ConnectionConfig | None = Field(default=None, max_length=CONFIG_ENTRIES)
    connected_account_id: str | None = Field(
        default=None, max_length=ID_CHARS, description="Reconnect this account (needs_reauth)"
    )


class ConnectSessionOut(BaseModel):
    id: str
    url: str
    expires_at: datetime
