"""A call as the public contract shows it: the resource the API answers with and the `data`
of every webhook event about a call, so both are built by the same code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from models.db.tables import CallAttempt, FunctionCall


class Attempt(BaseModel):
    number: int
    started_at: datetime
    duration_ms: int
    network_code: str | None
    error: str | None
    error_message: str | None
    decision: str
    rate_wait_ms: int | None = Field(
        default=None, description="How long rate limits held this attempt back"
    )
    rate_wait_reason: str | None = Field(default=None, description="Which limit, or a pause")


class FunctionCallOut(BaseModel):
    id: str
    status: str
    function: str
    app: str
    method: str
    url: str
    user_id: str
    connected_account_id: str
    batch_id: str | None
    network_code: str | None
    output: Any
    output_truncated: bool
    headers: dict[str, str] | None
    error: str | None
    error_message: str | None
    duration_ms: int | None
    attempt_count: int
    next_attempt_at: datetime | None = Field(
        default=None, description="When a waiting call (a retry, or a rate-limit slot) goes"
    )
    attempts: list[Attempt] | None = Field(
        default=None, description="Every attempt, on GET /function-calls/{id}"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class CallResult(BaseModel):
    """The Integry answer plus `id`: returned with 200 when `Prefer: wait` saw the call end;
    a failed call's `error` and `error_message` say why it has no answer."""

    id: str
    status: str
    network_code: str | None
    output: Any
    headers: dict[str, str] | None
    error: str | None = None
    error_message: str | None = None


def call_out(call: FunctionCall, attempts: list[CallAttempt] | None = None) -> FunctionCallOut:
    return FunctionCallOut(
        id=call.id,
        status=str(call.status),
        function=call.function,
        app=call.app,
        method=call.method,
        url=call.url,
        user_id=call.user_id,
        connected_account_id=call.connected_account_id,
        batch_id=call.batch_id,
        network_code=call.network_code,
        output=call.output,
        output_truncated=call.output_truncated,
        headers=call.response_headers,
        error=call.error,
        error_message=call.error_message,
        duration_ms=call.duration_ms,
        attempt_count=call.attempt_count,
        next_attempt_at=call.next_attempt_at if not call.status.is_final else None,
        attempts=None
        if attempts is None
        else [
            Attempt(
                number=a.number,
                started_at=a.started_at,
                duration_ms=a.duration_ms,
                network_code=a.network_code,
                error=a.error,
                error_message=a.error_message,
                decision=a.decision,
                rate_wait_ms=a.rate_wait_ms,
                rate_wait_reason=a.rate_wait_reason,
            )
            for a in attempts
        ],
        created_at=call.created_at,
        started_at=call.started_at,
        finished_at=call.finished_at,
    )


def call_result(call: FunctionCall) -> CallResult:
    return CallResult(
        id=call.id,
        status=str(call.status),
        network_code=call.network_code,
        output=call.output,
        headers=call.response_headers,
        error=call.error,
        error_message=call.error_message,
    )
