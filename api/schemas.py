"""Request and response bodies of the HTTP API (what /docs shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, field_validator

from models.calls.resources import FunctionCallOut
from models.catalog.apps import MAX_ATTEMPTS_LIMIT, check_retry_statuses
from models.net.urls import MAX_CALLBACK_URL_CHARS, MAX_URL_CHARS

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
METHODS: tuple[str, ...] = Method.__args__  # type: ignore[attr-defined]

# Lengths of the database columns a value is stored in (models/db/tables.py), so no database
# ever refuses one.
USER_ID_CHARS = 200
ID_CHARS = 40
APP_CHARS = 80
FUNCTION_CHARS = 120
UserId = Annotated[str, StringConstraints(max_length=USER_ID_CHARS)]
# connection_config: a few short scalar values (template values must also be DNS labels).
CONFIG_ENTRIES = 20
CONFIG_KEY_CHARS = 64
CONFIG_VALUE_CHARS = 255
ConnectionConfig = dict[
    Annotated[str, StringConstraints(max_length=CONFIG_KEY_CHARS)],
    Annotated[str, StringConstraints(max_length=CONFIG_VALUE_CHARS)] | int | float | bool | None,
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetryParams(_In):
    """How this call is retried, over the app's and the operator's defaults."""

    max_attempts: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ATTEMPTS_LIMIT,
        description="Attempts in all, the first included; 1 turns retries off",
    )
    on_status: list[int] | None = Field(
        default=None,
        max_length=50,
        description="Upstream statuses worth another attempt (default 429, 502, 503, 504); "
        "a POST or PATCH without an Idempotency-Key is retried only on 429 and 503",
        examples=[[429, 500, 502, 503, 504]],
    )

    _statuses = field_validator("on_status")(check_retry_statuses)


class TimeoutParams(_In):
    """Onward timeouts in seconds for this call, over the app's and the operator's; none may
    exceed PASSTHRU_MAX_TIMEOUT_S."""

    connect_s: float | None = Field(default=None, gt=0, description="Connecting")
    read_s: float | None = Field(default=None, gt=0, description="Longest wait for bytes")
    total_s: float | None = Field(default=None, gt=0, description="The whole exchange")


class PassthroughParams(_In):
    """What to send upstream. `url` is absolute on the app's hosts, or relative to its base URL."""

    method: str = Field(examples=["GET"])
    url: str = Field(
        max_length=MAX_URL_CHARS, examples=["https://slack.com/api/conversations.list?limit=2"]
    )
    body: JsonValue = None
    headers: dict[str, str] | None = None
    retry: RetryParams | None = None
    timeout: TimeoutParams | None = None

    def options(self) -> dict[str, Any] | None:
        """What the worker must know beyond the request itself (stored with the call)."""
        found = {
            name: part.model_dump(exclude_none=True)
            for name, part in (("retry", self.retry), ("timeout", self.timeout))
            if part is not None
        }
        return {k: v for k, v in found.items() if v} or None


class PassthroughRequest(PassthroughParams):
    callback_url: str | None = Field(default=None, max_length=MAX_CALLBACK_URL_CHARS)
    connected_account_id: str | None = Field(default=None, max_length=ID_CHARS)


class FunctionCallRequest(_In):
    """The SDK's form: `{function, params, connected_account_id?}`."""

    function: str = Field(max_length=FUNCTION_CHARS, examples=["slack-passthrough-request"])
    params: PassthroughParams
    connected_account_id: str | None = Field(default=None, max_length=ID_CHARS)
    callback_url: str | None = Field(default=None, max_length=MAX_CALLBACK_URL_CHARS)
    user_id: str | None = Field(
        default=None,
        max_length=USER_ID_CHARS,
        description="The end user; defaults to the X-User-ID header",
    )


class CallPage(BaseModel):
    items: list[FunctionCallOut]
    next_cursor: str | None


class FunctionOut(BaseModel):
    name: str
    app: str
    type: str
    description: str
    parameters: dict[str, Any]


class FunctionList(BaseModel):
    functions: list[FunctionOut]


class AccountIn(_In):
    app: str = Field(max_length=APP_CHARS)
    credentials: dict[str, Any]
    connection_config: ConnectionConfig | None = Field(default=None, max_length=CONFIG_ENTRIES)


class AccountPatch(_In):
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


class AccountList(BaseModel):
    items: list[AccountOut]


class ErrorDetailOut(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    error: str
    error_details: list[ErrorDetailOut]


class BatchIn(BaseModel):
    """Up to 1,000 calls in the `POST /function-calls` form; each is validated alone."""

    model_config = ConfigDict(extra="forbid")

    calls: list[Any] = Field(
        max_length=1000,
        description="Each in the POST /function-calls form; each is checked alone, so one bad "
        "call is one rejected item",
        examples=[
            [
                {
                    "function": "slack-passthrough-request",
                    "params": {"method": "GET", "url": "conversations.list"},
                }
            ]
        ],
    )


class BatchAccepted(BaseModel):
    index: int
    id: str


class BatchRejected(BaseModel):
    index: int
    error: str
    error_details: list[ErrorDetailOut]


class BatchSubmitted(BaseModel):
    batch_id: str
    accepted: list[BatchAccepted]
    rejected: list[BatchRejected]


class BatchOut(BaseModel):
    id: str
    created_at: datetime
    accepted: int
    rejected: int
    counts: dict[str, int] = Field(description="calls per status")
    finished: int
    done: bool
