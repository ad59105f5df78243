"""A call as a caller sends it (`POST /{app}-passthrough-request`, `POST /function-calls`),
and a page of the log."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, JsonValue, field_validator

from api.schemas.common import FUNCTION_CHARS, ID_CHARS, USER_ID_CHARS, StrictIn
from models.calls.resources import FunctionCallOut
from models.catalog.spec import MAX_ATTEMPTS_LIMIT, check_retry_statuses
from models.net.urls import MAX_CALLBACK_URL_CHARS, MAX_URL_CHARS

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
METHODS: tuple[str, ...] = Method.__args__  # type: ignore[attr-defined]


class RetryParams(StrictIn):
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


class TimeoutParams(StrictIn):
    """Onward timeouts in seconds for this call, over the app's and the operator's; none may
    exceed PASSTHRU_MAX_TIMEOUT_S."""

    connect_s: float | None = Field(default=None, gt=0, description="Connecting")
    read_s: float | None = Field(default=None, gt=0, description="Longest wait for bytes")
    total_s: float | None = Field(default=None, gt=0, description="The whole exchange")


class PassthroughParams(StrictIn):
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


class FunctionCallRequest(StrictIn):
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
