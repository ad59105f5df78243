"""Turn what an attempt produced, and the retry decision on it, into the result to store
(pure functions)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from models.broker import MAX_COUNTDOWN_S
from models.calls.states import CallStatus
from models.catalog.apps import App
from models.catalog.spec import RetrySpec
from worker.calls.claim import Claimed
from worker.calls.decode import decode_output, public_headers
from worker.calls.results import Result, call_option
from worker.calls.retry import Decision, RetryIn, RetryPolicy, decide, policy_for
from worker.calls.scrub import NOTHING, Scrubber
from worker.net.send import Answer, Outcome


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


def judge(
    c: Claimed,
    outcome: Outcome,
    app: App | None,
    *,
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random,
    scrub: Scrubber = NOTHING,
) -> Result:
    """Decide on retrying under the operator's `policy`, the app's and the call's own rules,
    then classify."""
    spec = app.retry if app else RetrySpec()
    decision = decide(
        outcome,
        c.attempt,
        method=c.call.method,
        has_idempotency_key=c.call.idempotency_key is not None,
        policy=policy_of(c, app, policy),
        spec=spec,
        now=now,
        rng=rng,
    )
    return classify(outcome, decision, now, scrub)


def policy_of(c: Claimed, app: App | None, base: RetryPolicy) -> RetryPolicy:
    """The call's retry policy: the operator's `base`, the app's rules, then its own."""
    return policy_for(base, app.retry if app else RetrySpec(), call_option(c, "retry"))
