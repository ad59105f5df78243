"""The status UPDATEs the state machines build, on a real database: a row moves only from a
status its machine allows (or the one the code said it knows), every other row is left as
it is."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

import pytest
from sqlalchemy import Engine, Table, select

from models.accounts.states import ACCOUNTS, AccountStatus
from models.calls.states import CALLS, CallStatus
from models.crypto.secrets import Vault
from models.db.ids import new_id
from models.db.tables import ConnectedAccount, FunctionCall, Tenant, WebhookDelivery
from models.errors import IllegalTransition
from models.machine import StateMachine
from models.webhooks.states import DELIVERIES, DeliveryStatus
from tests.worker.factories import NOW, make_account, make_call

_accounts: Table = ConnectedAccount.__table__  # type: ignore[attr-defined]
_calls: Table = FunctionCall.__table__  # type: ignore[attr-defined]
_deliveries: Table = WebhookDelivery.__table__  # type: ignore[attr-defined]

# A row of this tenant in this status; returns its id.
MakeRow = Callable[[Engine, Tenant, Vault, Any], str]


def _call(engine: Engine, tenant: Tenant, vault: Vault, status: CallStatus) -> str:
    return make_call(engine, make_account(engine, tenant, vault), status=status).id


def _account(engine: Engine, tenant: Tenant, vault: Vault, status: AccountStatus) -> str:
    account = make_account(engine, tenant, vault)
    with engine.begin() as conn:  # set up as it is, not moved
        conn.execute(_accounts.update().where(_accounts.c.id == account.id).values(status=status))
    return account.id


def _delivery(engine: Engine, tenant: Tenant, vault: Vault, status: DeliveryStatus) -> str:
    delivery = WebhookDelivery(
        id=new_id("msg"),
        tenant_id=tenant.id,
        event="function_call.completed",
        url="https://hooks.example.com/in",
        status=status,
        next_attempt_at=NOW,
    )
    with engine.begin() as conn:
        conn.execute(_deliveries.insert().values(**delivery.model_dump()))
    return delivery.id


MACHINES: dict[str, tuple[StateMachine[Any], type[StrEnum], Table, MakeRow]] = {
    "calls": (CALLS, CallStatus, _calls, _call),
    "accounts": (ACCOUNTS, AccountStatus, _accounts, _account),
    "deliveries": (DELIVERIES, DeliveryStatus, _deliveries, _delivery),
}


def _one_row_per_status(
    name: str, engine: Engine, tenant: Tenant, vault: Vault
) -> dict[StrEnum, str]:
    _, enum, _, make = MACHINES[name]
    return {status: make(engine, tenant, vault, status) for status in enum}


def _statuses(engine: Engine, table: Table, rows: dict[StrEnum, str]) -> dict[StrEnum, Any]:
    """Each row's status now, by the status it was made in."""
    with engine.connect() as conn:
        found = conn.execute(
            select(table.c.id, table.c.status).where(table.c.id.in_(rows.values()))
        ).all()
    now = {row_id: status for row_id, status in found}
    return {made: now[row_id] for made, row_id in rows.items()}


@pytest.mark.parametrize(
    ("name", "target"),
    [
        pytest.param(name, target, id=f"{name}-to-{target}")
        for name, (_, enum, _, _) in MACHINES.items()
        for target in enum
    ],
)
def test_a_guarded_update_moves_only_rows_in_a_source_status(
    engine: Engine, tenant: Tenant, vault: Vault, name: str, target: Any
) -> None:
    machine, _, table, _ = MACHINES[name]
    # Given one row in each status
    rows = _one_row_per_status(name, engine, tenant, vault)
    # When all of them are moved to `target` by the machine's UPDATE
    with engine.begin() as conn:
        moved = conn.execute(machine.update(table, target, table.c.id.in_(rows.values()))).rowcount
    # Then exactly the rows in a status that may move there did; the others are untouched
    sources = set(machine.sources_of(target))
    assert moved == len(sources)
    assert _statuses(engine, table, rows) == {
        made: target if made in sources else made for made in rows
    }


@pytest.mark.parametrize(
    ("name", "current", "target"),
    [
        pytest.param(name, current, target, id=f"{name}-{current}-to-{target}")
        for name, (machine, enum, _, _) in MACHINES.items()
        for current in enum
        for target in enum
        if machine.allows(current, target)
    ],
)
def test_an_update_from_a_known_status_moves_only_the_row_still_in_it(
    engine: Engine, tenant: Tenant, vault: Vault, name: str, current: Any, target: Any
) -> None:
    machine, _, table, _ = MACHINES[name]
    # Given one row in each status
    rows = _one_row_per_status(name, engine, tenant, vault)
    # When the code that read `current` moves them all to `target`
    with engine.begin() as conn:
        moved = conn.execute(
            machine.update(table, target, table.c.id.in_(rows.values()), current=current)
        ).rowcount
    # Then only the row in `current` moved, even where the table allows other sources
    assert moved == 1
    assert _statuses(engine, table, rows) == {
        made: target if made == current else made for made in rows
    }


def test_an_illegal_move_is_refused_before_any_sql(
    engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given a completed call
    call_id = _call(engine, tenant, vault, CallStatus.COMPLETED)
    # When code that knows it is completed asks to run it again
    # Then the machine refuses to build the UPDATE, and the call is as it was
    with pytest.raises(IllegalTransition):
        CALLS.update(
            _calls, CallStatus.RUNNING, _calls.c.id == call_id, current=CallStatus.COMPLETED
        )
    assert _statuses(engine, _calls, {CallStatus.COMPLETED: call_id}) == {
        CallStatus.COMPLETED: CallStatus.COMPLETED
    }


def test_an_orm_update_is_guarded_the_same_way(
    engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given a disabled account and an active one
    disabled = _account(engine, tenant, vault, AccountStatus.DISABLED)
    active = _account(engine, tenant, vault, AccountStatus.ACTIVE)
    # When both are enabled through the model class (as a session's UPDATE is)
    with engine.begin() as conn:
        moved = conn.execute(
            ACCOUNTS.update(
                ConnectedAccount,
                AccountStatus.ACTIVE,
                _accounts.c.id.in_([disabled, active]),
            )
        ).rowcount
    # Then only the disabled one moved (active -> active is no move)
    assert moved == 1
    assert _statuses(engine, _accounts, {AccountStatus.DISABLED: disabled}) == {
        AccountStatus.DISABLED: AccountStatus.ACTIVE
    }
