"""PASSTHRU_TENANT_MAX_ACCOUNTS: a tenant at its most connected accounts gets a 403 for a new
one (api/account_cap.py), counted on an index at most every COUNT_TTL_S per process."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.account_cap import COUNT_TTL_S, AccountCap, count_accounts
from models.accounts.tenants import create_tenant
from models.errors import ApiError
from tests.api.conftest import Caller, make_accounts
from tests.api.test_errors import assert_error_shape


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def capped(make_app: Callable[..., FastAPI], engine: Engine) -> tuple[Caller, Clock]:
    app = make_app(tenant_max_accounts=3)
    clock = Clock()
    app.state.accounts.monotonic = clock
    tenant, key = create_tenant(engine, "capped")
    return Caller(TestClient(app), tenant, key), clock


def _post(caller: Caller, token: str, user: str = "user-1") -> int:
    answer = caller.client.post(
        "/connected-accounts",
        json={"app": "slack", "credentials": {"access_token": token}},
        headers=caller.headers(user),
    )
    return answer.status_code


def test_a_tenant_at_its_most_accounts_gets_a_403_naming_them(
    capped: tuple[Caller, Clock],
) -> None:
    caller, _ = capped
    # Given a tenant holding its 3 accounts
    for i in range(3):
        caller.connect(user=f"user-{i}", token=f"xoxb-{i}")
    # When it connects a fourth
    answer = caller.client.post(
        "/connected-accounts",
        json={"app": "slack", "credentials": {"access_token": "xoxb-4"}},
        headers=caller.headers("user-4"),
    )
    # Then a 403 in the error shape names the bound and the setting; not a 429, which
    # clients retry: waiting frees nothing
    assert answer.status_code == 403
    assert_error_shape(answer.json())
    assert answer.json()["error"] == "account_limit_reached"
    assert answer.json()["error_details"][0]["field"] == "connected_accounts"
    assert "PASSTHRU_TENANT_MAX_ACCOUNTS" in answer.json()["error_details"][0]["message"]
    assert "Retry-After" not in answer.headers
    # while the same credentials posted again still find their account
    assert _post(caller, "xoxb-0", "user-0") == 200


def test_deleting_an_account_makes_room_at_once(capped: tuple[Caller, Clock]) -> None:
    caller, _ = capped
    made = [caller.connect(user=f"user-{i}", token=f"xoxb-{i}") for i in range(3)]
    assert _post(caller, "xoxb-4") == 403
    deleted = caller.client.delete(f"/connected-accounts/{made[0]}", headers=caller.headers())
    assert deleted.status_code == 204
    assert _post(caller, "xoxb-4") == 201
    assert _post(caller, "xoxb-5") == 403


def test_accounts_made_elsewhere_count_once_the_count_is_read_again(
    capped: tuple[Caller, Clock], engine: Engine
) -> None:
    caller, clock = capped
    caller.connect(user="user-0", token="xoxb-0")
    # Given two accounts stored by another process
    make_accounts(engine, caller.tenant, 2)
    assert _post(caller, "xoxb-1") == 201  # the count this process holds is 2 of 3
    # When the count is read again / Then the tenant is at its most
    clock.now += COUNT_TTL_S + 1
    assert _post(caller, "xoxb-2") == 403


def test_another_tenant_is_not_held_by_the_first(
    capped: tuple[Caller, Clock], engine: Engine
) -> None:
    caller, _ = capped
    make_accounts(engine, caller.tenant, 5)
    assert _post(caller, "xoxb-1") == 403
    tenant, key = create_tenant(engine, "neighbour")
    assert _post(Caller(caller.client, tenant, key), "xoxb-1") == 201


def test_the_count_reads_at_most_one_past_the_cap(engine: Engine) -> None:
    tenant, _ = create_tenant(engine, "many")
    make_accounts(engine, tenant, 12)
    assert count_accounts(engine, tenant.id, 5) == 6
    assert count_accounts(engine, tenant.id, 50) == 12
    cap = AccountCap(engine, 12)
    with pytest.raises(ApiError) as refused:
        cap.check(tenant.id)
    assert refused.value.error == "account_limit_reached"
    AccountCap(engine, 13).check(tenant.id)  # one more is room
