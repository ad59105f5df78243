"""The retry policy: a pure function of outcome, attempt, method and policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pydantic import ValidationError

from models.catalog.spec import RetrySpec
from worker.calls.retry import (
    MAX_ASKED_S,
    GiveUp,
    RetryIn,
    RetryPolicy,
    backoff_s,
    decide,
    policy_for,
    wait_asked_s,
)
from worker.net.send import Answer, Failure, Outcome

NOW = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=4, base_s=1.0, cap_s=8.0, max_wait_s=600)


def answer(status: int, headers: list[tuple[str, str]] | None = None) -> Answer:
    return Answer(status, headers or [], b"", False, 5)


def failure(error: str, maybe_delivered: bool) -> Failure:
    return Failure(error, "x", maybe_delivered, 5)


def run(
    outcome: Outcome,
    method: str = "GET",
    attempt: int = 1,
    key: bool = False,
    spec: RetrySpec | None = None,
    policy: RetryPolicy = POLICY,
) -> RetryIn | GiveUp:
    return decide(
        outcome,
        attempt,
        method=method,
        has_idempotency_key=key,
        policy=policy,
        spec=spec or RetrySpec(),
        now=NOW,
        rng=random.Random(7),
    )


@pytest.mark.parametrize(
    ("outcome", "method", "key", "retried", "error"),
    [
        (answer(200), "GET", False, False, None),
        (answer(404), "POST", False, False, None),
        (answer(503), "GET", False, True, None),
        (answer(503), "POST", False, True, None),  # an explicit "not now": not acted on
        (answer(429), "PATCH", False, True, None),
        (answer(502), "GET", False, True, None),
        (answer(502), "POST", False, False, None),  # may have been acted on: the answer stands
        (answer(502), "POST", True, True, None),  # unless the caller made it safe
        (failure("connect_error", False), "POST", False, True, None),  # never sent
        (failure("timeout", True), "GET", False, True, None),
        (failure("timeout", True), "POST", False, False, "outcome_unknown"),
        (failure("network_error", True), "PATCH", True, True, None),
        (failure("destination_forbidden", False), "GET", False, False, "destination_forbidden"),
    ],
)
def test_the_retry_table(
    outcome: Outcome, method: str, key: bool, retried: bool, error: str | None
) -> None:
    decision = run(outcome, method, key=key)
    assert isinstance(decision, RetryIn) is retried
    if isinstance(decision, GiveUp):
        assert decision.error == error


@pytest.mark.parametrize(
    ("outcome", "method", "key", "says_why"),
    [
        (answer(502), "POST", False, True),
        (failure("timeout", True), "PATCH", False, True),
        (answer(404), "POST", False, False),  # not a status retried for any method
        (failure("destination_forbidden", False), "POST", False, False),
    ],
)
def test_a_post_not_retried_for_safety_says_so(
    outcome: Outcome, method: str, key: bool, says_why: bool
) -> None:
    decision = run(outcome, method, key=key)
    assert isinstance(decision, GiveUp)
    reason = f"not retried: {method} without an Idempotency-Key"
    assert (reason in decision.reason) is says_why


def test_no_attempts_left_gives_up_with_the_failure() -> None:
    decision = run(failure("connect_error", False), attempt=POLICY.max_attempts)
    assert isinstance(decision, GiveUp)
    assert decision.error == "connect_error"
    assert isinstance(run(answer(503), attempt=POLICY.max_attempts), GiveUp)


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delay = backoff_s(attempt, POLICY, rng)
        assert ceiling / 2 <= delay <= ceiling


def test_retry_after_in_seconds_and_as_a_date_win_over_the_formula() -> None:
    decision = run(answer(429, [("Retry-After", "2")]))
    assert decision == RetryIn(2.0, "upstream answered 429")
    later = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    decision = run(answer(503, [("retry-after", later)]))
    assert isinstance(decision, RetryIn)
    assert decision.delay_s == pytest.approx(30, abs=1)


def test_reset_header_at_zero_remaining_is_honoured() -> None:
    spec = RetrySpec(
        after_header=None,
        reset_header="X-RateLimit-Reset",
        remaining_header="X-RateLimit-Remaining",
        reset_is="epoch",
    )
    headers = [("X-RateLimit-Reset", str(NOW.timestamp() + 12)), ("X-RateLimit-Remaining", "0")]
    decision = run(answer(429, headers), spec=spec)
    assert isinstance(decision, RetryIn)
    assert decision.delay_s == pytest.approx(12)


def test_a_wait_longer_than_the_maximum_is_rate_limited() -> None:
    decision = run(answer(429, [("Retry-After", "3600")]))
    assert isinstance(decision, GiveUp)
    assert decision.error == "rate_limited"


# --- the policy of one call: operator, then app, then call ------------------------------------


def test_without_app_or_call_settings_the_operators_policy_stands() -> None:
    assert policy_for(POLICY, RetrySpec(), None) == POLICY


def test_the_app_overrides_the_operator_and_the_call_overrides_the_app() -> None:
    # Given an app that allows 6 attempts and retries 500 too
    app = RetrySpec(max_attempts=6, on_status=[429, 500, 503])
    # When a call of that app asks for 2 attempts and nothing about statuses
    policy = policy_for(POLICY, app, {"max_attempts": 2})
    # Then the call's attempts and the app's statuses apply; the backoff stays the operator's
    assert policy.max_attempts == 2
    assert policy.on_status == frozenset({429, 500, 503})
    assert (policy.base_s, policy.cap_s, policy.max_wait_s) == (1.0, 8.0, 600)


def test_one_attempt_turns_retries_off() -> None:
    # Given a call that asked for a single attempt
    policy = policy_for(POLICY, RetrySpec(), {"max_attempts": 1})
    # When the upstream answers 503 to a GET / Then the answer stands
    decision = run(answer(503), policy=policy)
    assert isinstance(decision, GiveUp)
    assert decision.error is None


def test_a_call_may_add_a_status_but_not_make_a_post_unsafe() -> None:
    # Given a call that asks to retry 500 answers
    policy = policy_for(POLICY, RetrySpec(), {"on_status": [500]})
    # Then a GET is retried, a POST with a key too, and a POST without a key is not
    assert isinstance(run(answer(500), "GET", policy=policy), RetryIn)
    assert isinstance(run(answer(500), "POST", key=True, policy=policy), RetryIn)
    assert isinstance(run(answer(500), "POST", policy=policy), GiveUp)
    # And 503 is no longer retried: the call's list replaced the default
    assert isinstance(run(answer(503), "GET", policy=policy), GiveUp)


@pytest.mark.parametrize(
    "spec",
    [{"max_attempts": 0}, {"max_attempts": 11}, {"on_status": [200]}, {"on_status": [600]}],
)
def test_catalog_retry_settings_out_of_bounds_are_refused(spec: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RetrySpec.model_validate(spec)


@pytest.mark.parametrize(
    ("value", "asked"),
    [
        ("inf", MAX_ASKED_S),  # "forever": the longest wait, which max_wait_s turns down
        ("Infinity", MAX_ASKED_S),
        ("1e400", MAX_ASKED_S),
        ("-inf", 0.0),
        ("-5", 0.0),
        ("nan", None),  # not a number: ignored
        ("soon", None),
        ("", None),
        ("Mon, 99 Foo 9999 99:99:99 GMT", None),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_ASKED_S),
        (" 7 ", 7.0),
    ],
)
def test_retry_after_is_clamped_whatever_the_upstream_writes(
    value: str, asked: float | None
) -> None:
    assert wait_asked_s([("Retry-After", value)], RetrySpec(), NOW) == asked


@pytest.mark.parametrize("remaining", ["nan", "garbage", ""])
def test_a_reset_header_without_a_readable_remaining_count_asks_nothing(remaining: str) -> None:
    spec = RetrySpec(reset_header="X-Reset", remaining_header="X-Remaining", reset_is="seconds")
    headers = [("X-Reset", "30"), ("X-Remaining", remaining)]
    assert wait_asked_s(headers, spec, NOW) is None


@pytest.mark.parametrize("reset", ["inf", "1e308", "-1e308", "nan"])
def test_a_reset_header_is_clamped_too(reset: str) -> None:
    spec = RetrySpec(reset_header="X-Reset", remaining_header="X-Remaining")
    asked = wait_asked_s([("X-Reset", reset), ("X-Remaining", "0")], spec, NOW)
    assert asked is None or 0.0 <= asked <= MAX_ASKED_S


def test_a_429_asking_to_wait_forever_ends_the_call_rate_limited() -> None:
    # Given a 429 with Retry-After: inf / When decided / Then the call ends, it never waits
    decision = run(answer(429, [("Retry-After", "inf")]))
    assert isinstance(decision, GiveUp)
    assert decision.error == "rate_limited"


@pytest.mark.parametrize(
    ("reset_is", "reset"),
    [
        ("epoch", NOW.timestamp() + 12),
        ("epoch_ms", (NOW.timestamp() + 12) * 1000),
        ("seconds", 12),
    ],
)
def test_a_reset_header_is_read_as_its_app_says(reset_is: str, reset: float) -> None:
    # Given a reset header 12 s ahead, written as a Unix time, in milliseconds, or as seconds
    spec = RetrySpec(reset_header="X-Reset", remaining_header="X-Remaining", reset_is=reset_is)
    # When nothing remains / Then the wait asked is those 12 s
    asked = wait_asked_s([("X-Reset", str(reset)), ("X-Remaining", "0")], spec, NOW)
    assert asked == pytest.approx(12, abs=0.01)
