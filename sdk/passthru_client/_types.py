"""The API's resources as dataclasses, and the typed forms of what the SDK sends.

Each `from_dict` keeps the whole answer in `raw`, so fields added to the API later can be
read before the SDK knows them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, NotRequired, TypedDict, TypeVar

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
"""A call in one of these statuses will not change again."""

CALL_STATUSES = ("queued", "running", "retrying", "completed", "failed", "cancelled")

_Item = TypeVar("_Item")


def _time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class ErrorDetail:
    field: str
    message: str


class RetryParams(TypedDict, total=False):
    max_attempts: int
    on_status: list[int]


class TimeoutParams(TypedDict, total=False):
    connect_s: float
    read_s: float
    total_s: float


class PassthroughParams(TypedDict):
    """`params` of a passthrough function: what passthru sends upstream."""

    method: str
    url: str
    body: NotRequired[Any]
    headers: NotRequired[dict[str, str]]
    retry: NotRequired[RetryParams]
    timeout: NotRequired[TimeoutParams]


@dataclass(frozen=True)
class Call:
    """One call of a batch, in the `POST /function-calls` form."""

    function: str
    params: Mapping[str, Any]
    connected_account_id: str | None = None
    callback_url: str | None = None
    user_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"function": self.function, "params": dict(self.params)}
        for name in ("connected_account_id", "callback_url", "user_id"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body


@dataclass(frozen=True)
class Attempt:
    """One attempt of a call at the upstream, with the decision taken after it."""

    number: int
    started_at: datetime | None
    duration_ms: int | None
    network_code: str | None
    error: str | None
    error_message: str | None
    decision: str
    rate_wait_ms: int | None = None
    rate_wait_reason: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        return cls(
            number=int(data["number"]),
            started_at=_time(data.get("started_at")),
            duration_ms=data.get("duration_ms"),
            network_code=_str(data.get("network_code")),
            error=data.get("error"),
            error_message=data.get("error_message"),
            decision=str(data.get("decision", "")),
            rate_wait_ms=data.get("rate_wait_ms"),
            rate_wait_reason=data.get("rate_wait_reason"),
        )


@dataclass(frozen=True)
class FunctionCall:
    """A call, as `POST /function-calls` (200 or 202) or `GET /function-calls/{id}` answer it.

    The 200 answer of a submission that finished within `wait` (the Integry shape) carries
    only `id, status, network_code, output, headers, error`: the other fields are then None
    (`attempts` only comes with `get_call`/`wait_for`)."""

    id: str
    status: str
    network_code: str | None = None
    output: Any = None
    headers: dict[str, str] | None = None
    error: str | None = None
    error_message: str | None = None
    function: str | None = None
    app: str | None = None
    method: str | None = None
    url: str | None = None
    user_id: str | None = None
    connected_account_id: str | None = None
    batch_id: str | None = None
    output_truncated: bool = False
    duration_ms: int | None = None
    attempt_count: int | None = None
    next_attempt_at: datetime | None = None
    attempts: list[Attempt] | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """True once the call is final: completed, failed or cancelled."""
        return self.status in FINAL_STATUSES

    @property
    def ok(self) -> bool:
        """True when the upstream answered with a 2xx status."""
        return self.status == "completed" and (self.network_code or "").startswith("2")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FunctionCall:
        attempts = data.get("attempts")
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            network_code=_str(data.get("network_code")),
            output=data.get("output"),
            headers=data.get("headers"),
            error=data.get("error"),
            error_message=data.get("error_message"),
            function=data.get("function"),
            app=data.get("app"),
            method=data.get("method"),
            url=data.get("url"),
            user_id=data.get("user_id"),
            connected_account_id=data.get("connected_account_id"),
            batch_id=data.get("batch_id"),
            output_truncated=bool(data.get("output_truncated", False)),
            duration_ms=data.get("duration_ms"),
            attempt_count=data.get("attempt_count"),
            next_attempt_at=_time(data.get("next_attempt_at")),
            attempts=None if attempts is None else [Attempt.from_dict(a) for a in attempts],
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class _Page(Generic[_Item]):
    """One page of a list, and the cursor of the next page (None on the last)."""

    items: list[_Item]
    next_cursor: str | None


class CallPage(_Page[FunctionCall]):
    """One page of the Function Calls log."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallPage:
        return cls(*_page(data, FunctionCall.from_dict))


def _page(
    data: Mapping[str, Any], read: Callable[[Mapping[str, Any]], _Item]
) -> tuple[list[_Item], str | None]:
    """A page's items, each read by `read`, and the cursor of the next page (None on the
    last)."""
    return [read(item) for item in data.get("items") or ()], data.get("next_cursor") or None


@dataclass(frozen=True)
class BatchAccepted:
    index: int
    id: str


@dataclass(frozen=True)
class BatchRejected:
    index: int
    error: str
    error_details: list[ErrorDetail]

    def __str__(self) -> str:
        details = "; ".join(f"{d.field}: {d.message}" for d in self.error_details)
        return f"call {self.index}: {self.error}" + (f": {details}" if details else "")


@dataclass(frozen=True)
class BatchResult:
    """What `POST /function-calls/batch` answered: each call accepted or rejected alone."""

    batch_id: str
    accepted: list[BatchAccepted]
    rejected: list[BatchRejected]

    @property
    def ids(self) -> list[str]:
        """The accepted calls' ids, in the order the calls were given."""
        return [a.id for a in sorted(self.accepted, key=lambda a: a.index)]

    @property
    def ok(self) -> bool:
        """True when every call was accepted."""
        return not self.rejected

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchResult:
        return cls(
            batch_id=str(data["batch_id"]),
            accepted=[
                BatchAccepted(int(a["index"]), str(a["id"])) for a in data.get("accepted") or ()
            ],
            rejected=[
                BatchRejected(
                    int(r["index"]),
                    str(r["error"]),
                    [
                        ErrorDetail(str(d.get("field", "")), str(d.get("message", "")))
                        for d in r.get("error_details") or ()
                    ],
                )
                for r in data.get("rejected") or ()
            ],
        )


@dataclass(frozen=True)
class Batch:
    """A batch's progress (`GET /batches/{id}`): its calls counted per status."""

    id: str
    created_at: datetime | None
    accepted: int
    rejected: int
    counts: dict[str, int]
    finished: int
    done: bool

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Batch:
        return cls(
            id=str(data["id"]),
            created_at=_time(data.get("created_at")),
            accepted=int(data.get("accepted", 0)),
            rejected=int(data.get("rejected", 0)),
            counts={str(k): int(v) for k, v in (data.get("counts") or {}).items()},
            finished=int(data.get("finished", 0)),
            done=bool(data.get("done", False)),
        )


@dataclass(frozen=True)
class ConnectedAccount:
    """An end user's stored account for one app (its credentials are never shown)."""

    id: str
    app: str
    user_id: str
    status: str
    connection_config: dict[str, Any] | None
    created_at: datetime | None
    updated_at: datetime | None
    last_used_at: datetime | None
    source: str | None = None  # how it was connected: "api" or "connect_page"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConnectedAccount:
        return cls(
            id=str(data["id"]),
            app=str(data["app"]),
            user_id=str(data["user_id"]),
            status=str(data["status"]),
            connection_config=data.get("connection_config"),
            created_at=_time(data.get("created_at")),
            updated_at=_time(data.get("updated_at")),
            last_used_at=_time(data.get("last_used_at")),
            source=data.get("source"),
        )


class AccountPage(_Page[ConnectedAccount]):
    """One page of the connected accounts, newest first."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccountPage:
        return cls(*_page(data, ConnectedAccount.from_dict))


@dataclass(frozen=True)
class ConnectSession:
    """A single-use link (`url`) to send an end user to, to connect an account; it works
    until `expires_at`."""

    id: str
    url: str
    expires_at: datetime | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConnectSession:
        return cls(id=str(data["id"]), url=str(data["url"]), expires_at=_time(data["expires_at"]))


@dataclass(frozen=True)
class Function:
    """A function that can be invoked, with the JSON Schema of its `params`."""

    name: str
    app: str
    type: str
    description: str
    parameters: dict[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Function:
        return cls(
            name=str(data["name"]),
            app=str(data["app"]),
            type=str(data.get("type", "")),
            description=str(data.get("description", "")),
            parameters=dict(data.get("parameters") or {}),
        )


@dataclass(frozen=True)
class WebhookEndpoint:
    """The tenant's webhook endpoint: its default URL (None: each call names its own
    `callback_url`), whether it is enabled (a 410 answer disables it, with the reason), and
    `secret`, the `whsec_...` signing secret, which the API shows only once (the first
    `set_webhook_endpoint`, and each `rotate_webhook_secret`): else None."""

    url: str | None
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    updated_at: datetime | None
    secret: str | None = field(default=None, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WebhookEndpoint:
        return cls(
            url=_str(data.get("url")),
            enabled=bool(data.get("enabled", False)),
            disabled_at=_time(data.get("disabled_at")),
            disabled_reason=_str(data.get("disabled_reason")),
            updated_at=_time(data.get("updated_at")),
            secret=_str(data.get("secret")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class DeliveryAttempt:
    """One attempt to deliver a webhook: the receiver's status code or the error, and the
    decision taken after it."""

    number: int
    started_at: datetime | None
    duration_ms: int | None
    status_code: int | None
    error: str | None
    decision: str
    url: str | None = None  # the URL it was for (None: it had none, or made before it was kept)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeliveryAttempt:
        status_code = data.get("status_code")
        return cls(
            number=int(data["number"]),
            started_at=_time(data.get("started_at")),
            duration_ms=data.get("duration_ms"),
            status_code=None if status_code is None else int(status_code),
            error=data.get("error"),
            decision=str(data.get("decision", "")),
            url=data.get("url"),
        )


@dataclass(frozen=True)
class Delivery:
    """A webhook delivery of a call's event (`id` is its stable `webhook-id`): `status` is
    pending, delivering, succeeded or failed; `next_attempt_at` is set while pending."""

    id: str
    event: str
    url: str
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime | None
    finished_at: datetime | None
    attempts: list[DeliveryAttempt]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Delivery:
        return cls(
            id=str(data["id"]),
            event=str(data["event"]),
            url=str(data["url"]),
            status=str(data["status"]),
            attempt_count=int(data.get("attempt_count") or 0),
            next_attempt_at=_time(data.get("next_attempt_at")),
            created_at=_time(data.get("created_at")),
            finished_at=_time(data.get("finished_at")),
            attempts=[DeliveryAttempt.from_dict(a) for a in data.get("attempts") or ()],
            raw=dict(data),
        )
