"""Whether and when to try a call again: a pure function of the outcome, the attempt and
the policy, with the randomness injected.

outcome                          GET, PUT, DELETE...   POST/PATCH           POST/PATCH + key
answered 429 or 503 (*)          retry                 retry                retry
answered 502 or 504 (*)          retry                 done (completed)     retry
answered another status (*)      done (completed)      done                 done
connect error / connect timeout  retry                 retry (never sent)   retry
timeout / dropped after sending  retry                 fail: outcome_unknown  retry
invalid URL/request, bad host    fail                  fail                 fail

(*) Statuses are retried when they are in the policy's `on_status` (429, 502, 503, 504 unless
the app or the call says otherwise); for POST/PATCH without a key only 429 and 503 ever are,
as those answers say the request was not acted on. Every retry needs an attempt left
(`max_attempts`, 4 unless the app or the call says otherwise); with none left, an answer
stands (`completed`) and a failure ends the call `failed`.

A `Retry-After` (seconds or HTTP-date) or the app's reset header wins over the backoff
formula; a wait longer than `max_wait_s` ends the call `failed` with `rate_limited`. These
headers are the upstream's to write: a value that is not a number or a date is ignored,
infinity is taken as the longest wait (MAX_ASKED_S) and a negative one as none.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from models.catalog.spec import RetrySpec
from worker.net.send import Answer, Outcome

NON_IDEMPOTENT = frozenset({"POST", "PATCH"})
# Answers that say the request was not acted on, whatever the method.
NOT_ACTED_ON = frozenset({429, 503})
# Failures that prove the request never left.
NEVER_SENT = frozenset({"connect_error", "connect_timeout"})
# Failures no retry can fix.
PERMANENT = frozenset(
    {"invalid_url", "invalid_request", "destination_forbidden", "too_many_redirects"}
)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    on_status: frozenset[int] = frozenset({429, 502, 503, 504})
    base_s: float = 0.5  # first backoff, doubled per attempt
    cap_s: float = 60.0  # longest backoff from the formula
    max_wait_s: float = 600.0  # longer waits asked by the upstream give up: rate_limited


def policy_for(base: RetryPolicy, app: RetrySpec, call: Mapping[str, Any] | None) -> RetryPolicy:
    """The operator's policy, with the app's catalog entry, then the call's own `retry`
    params, over it: `max_attempts` and `on_status` only; backoff and the longest wait stay
    the operator's."""
    policy = base
    for layer in (app.model_dump(include={"max_attempts", "on_status"}), call or {}):
        if (attempts := layer.get("max_attempts")) is not None:
            policy = replace(policy, max_attempts=int(attempts))
        if (statuses := layer.get("on_status")) is not None:
            policy = replace(policy, on_status=frozenset(int(s) for s in statuses))
    return policy


@dataclass(frozen=True)
class RetryIn:
    delay_s: float
    reason: str


@dataclass(frozen=True)
class GiveUp:
    reason: str
    error: str | None = None  # set when the call fails; None: the answer stands


Decision = RetryIn | GiveUp


def backoff_s(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential with jitter: uniform in [c/2, c] where c = min(cap, base * 2^(attempt-1))."""
    ceiling = min(policy.cap_s, policy.base_s * 2 ** (attempt - 1))
    return rng.uniform(ceiling / 2, ceiling)


# The longest wait a header can ask for, in seconds; anything longer (infinity included) is
# taken as this, which max_wait_s turns into `rate_limited` long before.
MAX_ASKED_S = 86_400.0


def _number(raw: str) -> float | None:
    """A header's number, or None for garbage (NaN included); infinities stay."""
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _seconds(value: float) -> float:
    return min(max(0.0, value), MAX_ASKED_S)


def _date_in_s(raw: str, now: datetime) -> float | None:
    try:
        return (parsedate_to_datetime(raw) - now).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def wait_asked_s(headers: list[tuple[str, str]], spec: RetrySpec, now: datetime) -> float | None:
    """Seconds the upstream asked us to wait (Retry-After, or the app's reset header), from
    0 to MAX_ASKED_S; None when it asked nothing readable."""
    values = {k.lower(): v for k, v in headers}
    if spec.after_header and (raw := values.get(spec.after_header.lower())):
        asked = _number(raw)
        if asked is None:
            asked = _date_in_s(raw, now)
        if asked is not None:
            return _seconds(asked)
    if spec.reset_header and (raw := values.get(spec.reset_header.lower())):
        remaining: float | None = 0.0  # no remaining header: the reset header alone counts
        if spec.remaining_header:
            remaining = _number(values.get(spec.remaining_header.lower()) or "")
        reset = _number(raw)
        if reset is not None and remaining is not None and remaining <= 0:
            return _seconds(_reset_in_s(reset, spec, now))
    return None


def _reset_in_s(reset: float, spec: RetrySpec, now: datetime) -> float:
    """Seconds from `now` to a reset header's value, read as `spec.reset_is` says."""
    if spec.reset_is == "epoch":
        return reset - now.timestamp()
    if spec.reset_is == "epoch_ms":
        return reset / 1000 - now.timestamp()
    return reset


# A 429 that says nothing of how long to wait pauses its key this long.
DEFAULT_PAUSE_S = 1.0


def pause_asked_s(answer: Answer, spec: RetrySpec, now: datetime) -> float | None:
    """How long the upstream wants every call of this key to hold off, if it said so: a 429
    (or a 503 with Retry-After), or any answer whose remaining count reached zero."""
    if answer.status in NOT_ACTED_ON:
        asked = wait_asked_s(answer.headers, spec, now)
        if asked is None and answer.status == 429:
            return DEFAULT_PAUSE_S
        return asked
    reset_only = spec.model_copy(update={"after_header": None})
    return wait_asked_s(answer.headers, reset_only, now)


def may_resend(method: str, *, has_idempotency_key: bool) -> bool:
    """Whether a call that may have reached the upstream can be sent again: idempotent
    methods, and POST or PATCH with an Idempotency-Key."""
    return method not in NON_IDEMPOTENT or has_idempotency_key


def decide(
    outcome: Outcome,
    attempt: int,
    *,
    method: str,
    has_idempotency_key: bool,
    policy: RetryPolicy,
    spec: RetrySpec,
    now: datetime,
    rng: random.Random,
) -> Decision:
    safe = may_resend(method, has_idempotency_key=has_idempotency_key)
    unsafe = f"not retried: {method} without an Idempotency-Key"
    if isinstance(outcome, Answer):
        status = outcome.status
        if status not in policy.on_status:
            return GiveUp(f"upstream answered {status}")
        if not (safe or status in NOT_ACTED_ON):
            return GiveUp(f"upstream answered {status}; {unsafe}")
        return _again(
            attempt,
            policy,
            wait_asked_s(outcome.headers, spec, now),
            rng,
            f"upstream answered {status}",
            answered=True,
        )
    if outcome.error in PERMANENT:
        return GiveUp(outcome.error, outcome.error)
    if outcome.maybe_delivered and not safe:
        return GiveUp(
            f"{outcome.error} after the request may have reached the upstream; {unsafe}",
            "outcome_unknown",
        )
    return _again(attempt, policy, None, rng, outcome.error, answered=False, error=outcome.error)


def _again(
    attempt: int,
    policy: RetryPolicy,
    asked_s: float | None,
    rng: random.Random,
    reason: str,
    *,
    answered: bool,
    error: str | None = None,
) -> Decision:
    if attempt >= policy.max_attempts:
        return GiveUp(
            f"{reason}; no attempts left ({policy.max_attempts})", None if answered else error
        )
    if asked_s is not None and asked_s > policy.max_wait_s:
        return GiveUp(
            f"{reason}; asked to wait {asked_s:.0f} s, over {policy.max_wait_s:.0f} s",
            "rate_limited",
        )
    delay = asked_s if asked_s is not None else backoff_s(attempt, policy, rng)
    return RetryIn(delay, reason)
