"""Turn what an attempt produced, and the retry decision on it, into the result to store
(a pure function)."""

from __future__ import annotations

from datetime import datetime, timedelta

from models.calls.states import CallStatus
from worker.decode import decode_output, public_headers
from worker.record import Result
from worker.retry import Decision, RetryIn
from worker.scrub import NOTHING, Scrubber
from worker.send import Answer, Outcome

# Retries due within this are published at once with a Celery countdown; later ones are
# left to the sweeper (no long ETA ever sits in Redis).
MAX_COUNTDOWN_S = 60.0


def classify(
    outcome: Outcome, decision: Decision, now: datetime, scrub: Scrubber = NOTHING
) -> Result:
    """The result to store; `scrub` (the request's) runs over the decoded answer too, since
    decoding can rebuild a secret the raw bytes did not show."""
    if isinstance(decision, RetryIn):
        status = CallStatus.RETRYING
        text = f"retry in {decision.delay_s * 1000:.0f} ms: {decision.reason}"
        next_at: datetime | None = now + timedelta(seconds=decision.delay_s)
        countdown = decision.delay_s if decision.delay_s <= MAX_COUNTDOWN_S else None
        error = None if isinstance(outcome, Answer) else outcome.error
    else:
        status = (
            CallStatus.FAILED
            if (decision.error or not isinstance(outcome, Answer))
            else (CallStatus.COMPLETED)
        )
        text = f"{'done' if status is CallStatus.COMPLETED else 'give up'}: {decision.reason}"
        next_at = None
        countdown = None
        error = decision.error or (None if isinstance(outcome, Answer) else outcome.error)
    if isinstance(outcome, Answer):
        headers = public_headers(outcome.headers)
        return Result(
            status=status,
            decision=text,
            network_code=str(outcome.status),
            output=scrub.value(decode_output(outcome.body, headers.get("content-type"))),
            output_truncated=outcome.truncated,
            headers=headers,
            error=error,
            duration_ms=outcome.duration_ms,
            next_attempt_at=next_at,
            countdown_s=countdown,
        )
    return Result(
        status=status,
        decision=text,
        error=error,
        error_message=outcome.message,
        duration_ms=outcome.duration_ms,
        next_attempt_at=next_at,
        countdown_s=countdown,
    )


def failed(error: str, message: str) -> Result:
    """A call that cannot be attempted at all (credentials unreadable, app removed, ...)."""
    return Result(
        status=CallStatus.FAILED, decision=f"give up: {error}", error=error, error_message=message
    )
