"""The three state machines (calls, connected accounts, webhook deliveries): exactly the
documented moves are allowed, and `check` refuses every other pair."""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Any

import pytest

from models.accounts.states import ACCOUNTS, AccountStatus
from models.calls.states import CALLS, FINAL, CallStatus
from models.errors import IllegalTransition
from models.machine import StateMachine
from models.webhooks.states import DELIVERIES, DeliveryStatus

Q, RUN, RETRY, DONE, FAIL, CANCEL = (
    CallStatus.QUEUED,
    CallStatus.RUNNING,
    CallStatus.RETRYING,
    CallStatus.COMPLETED,
    CallStatus.FAILED,
    CallStatus.CANCELLED,
)
ACTIVE, REAUTH, DISABLED = AccountStatus.ACTIVE, AccountStatus.NEEDS_REAUTH, AccountStatus.DISABLED
PENDING, DELIVERING, SUCCEEDED, D_FAILED = (
    DeliveryStatus.PENDING,
    DeliveryStatus.DELIVERING,
    DeliveryStatus.SUCCEEDED,
    DeliveryStatus.FAILED,
)

# The moves docs/architecture.md documents for each machine, and no others.
ALLOWED: dict[str, set[tuple[Any, Any]]] = {
    "calls": {
        (Q, RUN),
        (Q, CANCEL),
        (Q, FAIL),  # credentials revoked before it ran
        (RUN, DONE),
        (RUN, FAIL),
        (RUN, RETRY),
        (RUN, Q),  # handed back unsent, to wait for a rate-limit slot
        (RETRY, RUN),
        (RETRY, CANCEL),
        (RETRY, FAIL),
    },
    "accounts": {
        (ACTIVE, REAUTH),
        (ACTIVE, DISABLED),
        (REAUTH, ACTIVE),  # new credentials
        (REAUTH, DISABLED),
        (DISABLED, ACTIVE),
        (DISABLED, REAUTH),  # the refresh token was revoked all the same
    },
    "deliveries": {
        (PENDING, DELIVERING),
        (PENDING, PENDING),  # redelivered: due now
        (DELIVERING, SUCCEEDED),
        (DELIVERING, D_FAILED),
        (DELIVERING, PENDING),  # another attempt later, or its lease ran out
        (SUCCEEDED, PENDING),  # redelivered
        (D_FAILED, PENDING),
    },
}
MACHINES: dict[str, tuple[StateMachine[Any], type[StrEnum]]] = {
    "calls": (CALLS, CallStatus),
    "accounts": (ACCOUNTS, AccountStatus),
    "deliveries": (DELIVERIES, DeliveryStatus),
}


def _pairs(allowed: bool) -> list[Any]:
    return [
        pytest.param(name, current, target, id=f"{name}-{current}-{target}")
        for name, (_, enum) in MACHINES.items()
        for current, target in itertools.product(enum, enum)
        if ((current, target) in ALLOWED[name]) is allowed
    ]


@pytest.mark.parametrize(("name", "current", "target"), _pairs(allowed=True))
def test_every_allowed_move_is_accepted(name: str, current: StrEnum, target: StrEnum) -> None:
    machine, _ = MACHINES[name]
    assert machine.allows(current, target)
    assert machine.check(current, target) is target


@pytest.mark.parametrize(("name", "current", "target"), _pairs(allowed=False))
def test_every_other_move_is_refused(name: str, current: StrEnum, target: StrEnum) -> None:
    machine, _ = MACHINES[name]
    assert not machine.allows(current, target)
    with pytest.raises(IllegalTransition) as refused:
        machine.check(current, target)
    assert (refused.value.current, refused.value.target) == (current, target)
    assert str(refused.value) == f"a {machine.what} cannot go from {current} to {target}"


def test_the_refused_pairs_are_every_pair_not_allowed() -> None:
    # 6 call statuses, 3 account statuses, 4 delivery statuses: 36 + 9 + 16 pairs in all
    assert len(_pairs(allowed=True)) == 10 + 6 + 7
    assert len(_pairs(allowed=False)) == (36 - 10) + (9 - 6) + (16 - 7)


@pytest.mark.parametrize(
    ("name", "target"),
    [(name, target) for name, (_, enum) in MACHINES.items() for target in enum],
)
def test_sources_of_lists_every_status_that_may_move_to_target(name: str, target: Any) -> None:
    machine, _ = MACHINES[name]
    expected = {current for current, t in ALLOWED[name] if t == target}
    assert set(machine.sources_of(target)) == expected
    assert len(machine.sources_of(target)) == len(expected)


def test_final_call_statuses_have_no_exit() -> None:
    assert set(FINAL) == {DONE, FAIL, CANCEL}
    assert all(s.is_final for s in FINAL)
    assert not any(s.is_final for s in (Q, RUN, RETRY))
    # nothing ends an account or a delivery for good: a delivery can always be redelivered
    assert ACCOUNTS.final == frozenset()
    assert DELIVERIES.final == frozenset()


def test_status_values_are_the_public_strings() -> None:
    # The API, webhook events and the database keep these strings
    assert [s.value for s in CallStatus] == [
        "queued",
        "running",
        "retrying",
        "completed",
        "failed",
        "cancelled",
    ]
    assert [s.value for s in AccountStatus] == ["active", "needs_reauth", "disabled"]
    assert [s.value for s in DeliveryStatus] == ["pending", "delivering", "succeeded", "failed"]
    assert str(DONE) == "completed"
    assert f"{REAUTH}" == "needs_reauth"


# --- the mechanism ------------------------------------------------------------------------


def test_sources_from_a_known_status_are_checked() -> None:
    # Given code that knows where its rows are
    # Then the sources are exactly those, once each move is checked
    assert CALLS.sources(FAIL, current=(Q, RETRY)) == (Q, RETRY)
    assert CALLS.sources([DONE, FAIL, RETRY], current=RUN) == (RUN,)
    with pytest.raises(IllegalTransition):
        CALLS.sources(FAIL, current=(Q, DONE))


def test_sources_of_several_targets_are_those_that_may_move_to_each() -> None:
    assert set(CALLS.sources([Q, DONE])) == {RUN}
    with pytest.raises(ValueError, match="no status may move to all of"):
        CALLS.sources([RUN, DONE])


def test_a_table_must_give_the_moves_of_every_status() -> None:
    with pytest.raises(ValueError, match="no moves given for"):
        StateMachine("account", {ACTIVE: {DISABLED}, DISABLED: {ACTIVE}})


def test_the_guard_of_one_source_is_an_equality() -> None:
    # (an expanding IN cannot go in an executemany, as record() runs its UPDATE)
    from models.db.tables import FunctionCall

    status = FunctionCall.__table__.c.status  # type: ignore[attr-defined]
    assert str(CALLS.guard(status, [DONE, FAIL], current=RUN)) == "function_call.status = :status_1"
    assert " IN " in str(CALLS.guard(status, CANCEL))
