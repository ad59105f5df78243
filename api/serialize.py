"""Rows -> API resources."""

from __future__ import annotations

from api.schemas import AccountOut, Attempt, CallResult, FunctionCallOut
from models.tables import CallAttempt, ConnectedAccount, FunctionCall


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
    )


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
