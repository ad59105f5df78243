"""The call state machine: exactly the documented moves are allowed."""

from __future__ import annotations

import itertools

import pytest

from models.calls.states import FINAL, CallStatus, sources_of, transition
from models.errors import IllegalTransition

Q, RUN, RETRY, DONE, FAIL, CANCEL = (
    CallStatus.QUEUED,
    CallStatus.RUNNING,
    CallStatus.RETRYING,
    CallStatus.COMPLETED,
    CallStatus.FAILED,
    CallStatus.CANCELLED,
)

# The moves DESIGN.md and models/calls/states.py document, and no others.
ALLOWED = {
    (Q, RUN),
    (Q, CANCEL),
    (Q, FAIL),
    (RUN, DONE),
    (RUN, FAIL),
    (RUN, RETRY),
    (RUN, Q),  # handed back unsent, to wait for a rate-limit slot
    (RETRY, RUN),
    (RETRY, CANCEL),
    (RETRY, FAIL),
}
ALL_PAIRS = list(itertools.product(CallStatus, CallStatus))
DISALLOWED = [pair for pair in ALL_PAIRS if pair not in ALLOWED]


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_transition_returns_target(current: CallStatus, target: CallStatus) -> None:
    assert transition(current, target) is target


@pytest.mark.parametrize(("current", "target"), DISALLOWED)
def test_disallowed_transition_raises(current: CallStatus, target: CallStatus) -> None:
    with pytest.raises(IllegalTransition):
        transition(current, target)


@pytest.mark.parametrize("final", [DONE, FAIL, CANCEL])
def test_final_states_have_no_exit(final: CallStatus) -> None:
    assert final.is_final
    for target in CallStatus:
        with pytest.raises(IllegalTransition):
            transition(final, target)


def test_final_set_is_exactly_completed_failed_cancelled() -> None:
    assert set(FINAL) == {DONE, FAIL, CANCEL}
    assert not any(s.is_final for s in (Q, RUN, RETRY))


@pytest.mark.parametrize("target", list(CallStatus))
def test_sources_of_lists_every_status_that_may_move_to_target(target: CallStatus) -> None:
    expected = {current for current, t in ALLOWED if t == target}
    assert set(sources_of(target)) == expected
    assert len(sources_of(target)) == len(expected)


def test_sources_of_running_and_cancelled() -> None:
    assert set(sources_of(RUN)) == {Q, RETRY}
    assert set(sources_of(CANCEL)) == {Q, RETRY}
    assert sources_of(Q) == [RUN]  # handed back unsent


def test_status_values_are_the_public_strings() -> None:
    assert [s.value for s in CallStatus] == [
        "queued",
        "running",
        "retrying",
        "completed",
        "failed",
        "cancelled",
    ]
    assert str(DONE) == "completed"
