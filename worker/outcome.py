"""Classify what an attempt produced into the result to store (a pure function).

Retry decisions (which failures to try again, and when) plug in here.
"""

from __future__ import annotations

from models.states import CallStatus
from worker.decode import decode_output, public_headers
from worker.record import Result
from worker.send import Answer, Outcome


def classify(outcome: Outcome) -> Result:
    if isinstance(outcome, Answer):
        headers = public_headers(outcome.headers)
        return Result(
            status=CallStatus.COMPLETED,
            decision=f"done: upstream answered {outcome.status}",
            network_code=str(outcome.status),
            output=decode_output(outcome.body, headers.get("content-type")),
            output_truncated=outcome.truncated,
            headers=headers,
            duration_ms=outcome.duration_ms,
        )
    return Result(
        status=CallStatus.FAILED,
        decision=f"give up: {outcome.error}",
        error=outcome.error,
        error_message=outcome.message,
        duration_ms=outcome.duration_ms,
    )


def failed(error: str, message: str) -> Result:
    """A call that cannot be attempted at all (credentials unreadable, app removed, ...)."""
    return Result(
        status=CallStatus.FAILED, decision=f"give up: {error}", error=error, error_message=message
    )
