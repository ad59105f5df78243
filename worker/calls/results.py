"""What an attempt ended with: `Result` (made by `worker.calls.outcome`, or `failed` when a call
cannot be attempted) and `Attempted`, a claimed call with its result, ready to store and to
log (`log_attempt`, the call events of `passthru.calls`)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from models.calls.resources import CallResult
from models.calls.states import CallStatus
from models.keys import QUEUE_BULK, QUEUE_INTERACTIVE
from models.logs import CALLS_LOGGER
from models.webhooks.signing import message_id
from worker.calls.claim import Claimed

call_log = logging.getLogger(CALLS_LOGGER)


@dataclass(frozen=True)
class Result:
    """What one attempt ended with, ready to store."""

    status: CallStatus
    decision: str
    network_code: str | None = None
    output: Any = None
    output_truncated: bool = False
    headers: dict[str, str] | None = None
    error: str | None = None
    error_message: str | None = None
    duration_ms: int = 0
    next_attempt_at: datetime | None = None  # for `retrying`
    countdown_s: float | None = None  # set when the retry is published with a countdown
    rate_wait_ms: int | None = None  # how long rate limits held this attempt back
    rate_wait_reason: str | None = None


def failed(error: str, message: str) -> Result:
    """A call that cannot be attempted at all (credentials unreadable, app removed, ...)."""
    return Result(
        status=CallStatus.FAILED, decision=f"give up: {error}", error=error, error_message=message
    )


def lane_of(c: Claimed) -> str:
    """The queue a call's messages go to: a batch's calls are bulk."""
    return QUEUE_BULK if c.call.batch_id else QUEUE_INTERACTIVE


@dataclass(frozen=True)
class Attempted:
    """One claimed call and the result of its attempt."""

    call_id: str
    account_id: str | None
    attempt: int
    started_at: datetime
    result: Result
    lane: str = QUEUE_INTERACTIVE
    tenant_id: str | None = None  # for the log line
    app: str | None = None
    method: str | None = None
    path: str | None = None  # the URL's path alone: a query string may hold a secret

    @staticmethod
    def of(c: Claimed, started_at: datetime, result: Result) -> Attempted:
        return Attempted(
            call_id=c.call.id,
            tenant_id=c.call.tenant_id,
            app=c.call.app,
            method=c.call.method,
            path=urlsplit(c.call.url).path,
            lane=lane_of(c),
            account_id=c.account.id if c.account else None,
            attempt=c.attempt,
            started_at=started_at,
            result=result,
        )

    def attempt_row(self) -> dict[str, Any]:
        """The attempt's `call_attempt` row."""
        r = self.result
        return {
            "call_id": self.call_id,
            "number": self.attempt,
            "started_at": self.started_at,
            "duration_ms": r.duration_ms,
            "network_code": r.network_code,
            "error": r.error,
            "error_message": r.error_message,
            "decision": r.decision,
            "rate_wait_ms": r.rate_wait_ms,
            "rate_wait_reason": (r.rate_wait_reason or "")[:200] or None,
        }

    def answer(self) -> CallResult:
        """The answer to a caller waiting on the call, as the API would build it from the
        stored row."""
        r = self.result
        return CallResult(
            id=self.call_id,
            status=str(r.status),
            network_code=r.network_code,
            output=r.output,
            headers=r.headers,
            error=r.error,
            error_message=r.error_message,
        )


def call_option(c: Claimed, name: str) -> dict[str, Any] | None:
    """The call's own `retry` or `timeout` params, if it gave them."""
    value = (c.call.options or {}).get(name)
    return value if isinstance(value, dict) else None


def log_attempt(item: Attempted) -> None:
    """One line per attempt: `call.finished`, or `call.attempt` when another follows (the
    URL's path alone: its query string may hold a secret)."""
    r = item.result
    call_log.info(
        "call %s %s",
        item.call_id,
        r.status,
        extra={
            "event": "call.finished" if r.status.is_final else "call.attempt",
            "call_id": item.call_id,
            "tenant_id": item.tenant_id,
            "app": item.app,
            "method": item.method,
            "path": item.path,
            "status": str(r.status),
            "attempt": item.attempt,
            "network_code": r.network_code,
            "error": r.error,
            "duration_ms": r.duration_ms,
            "rate_wait_ms": r.rate_wait_ms,
        },
    )


def tally(call_ids: Sequence[str], statuses: Mapping[str, CallStatus]) -> dict[str, int]:
    """How many of a message's calls ended in each status, and how many were `not_run`
    (taken, finished or cancelled already): a task's result as Flower shows it, short
    whatever the message's size (each id's status was formatted into the task's log line
    and its event, 5 µs per call)."""
    counts = Counter(str(status) for status in statuses.values())
    not_run = len(set(call_ids)) - len(statuses)
    return {**counts, "not_run": not_run} if not_run else dict(counts)


def event_tenants(items: Sequence[Attempted], deliveries: Sequence[str]) -> dict[str, str]:
    """The tenant of each call's event among `deliveries` (a batch's event is left out:
    its tenant is read when it is taken)."""
    new = set(deliveries)
    return {
        event: item.tenant_id
        for item in items
        if item.tenant_id and (event := message_id(item.call_id)) in new
    }
