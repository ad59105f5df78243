"""The retry policy: a pure function of outcome, attempt, method and policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from models.catalog import RetrySpec
from worker.retry import GiveUp, RetryIn, RetryPolicy, backoff_s, decide
from worker.send import Answer, Failure, Outcome

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
) -> RetryIn | GiveUp:
    return decide(
        outcome,
        attempt,
        method=method,
        has_idempotency_key=key,
        policy=POLICY,
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
