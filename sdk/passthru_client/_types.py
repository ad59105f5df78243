"""The API's calls and batches as dataclasses, the typed forms of what the SDK sends, and
what every resource is read with (times, pages, error details); the other resources are in
`_resources`.

Each `from_dict` of a resource that may grow keeps the whole answer in `raw`, so fields
added to the API later can be read before the SDK knows them.
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


def as_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def as_str(value: Any) -> str | None:
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
            started_at=as_time(data.get("started_at")),
            duration_ms=data.get("duration_ms"),
            network_code=as_str(data.get("network_code")),
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
            network_code=as_str(data.get("network_code")),
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
            next_attempt_at=as_time(data.get("next_attempt_at")),
            attempts=None if attempts is None else [Attempt.from_dict(a) for a in attempts],
            created_at=as_time(data.get("created_at")),
            started_at=as_time(data.get("started_at")),
            finished_at=as_time(data.get("finished_at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Page(Generic[_Item]):
    """One page of a list, and the cursor of the next page (None on the last)."""

    items: list[_Item]
    next_cursor: str | None


class CallPage(Page[FunctionCall]):
    """One page of the Function Calls log."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallPage:
        return cls(*page_of(data, FunctionCall.from_dict))


def page_of(
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
            created_at=as_time(data.get("created_at")),
            accepted=int(data.get("accepted", 0)),
            rejected=int(data.get("rejected", 0)),
            counts={str(k): int(v) for k, v in (data.get("counts") or {}).items()},
            finished=int(data.get("finished", 0)),
            done=bool(data.get("done", False)),
        )
