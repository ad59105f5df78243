"""Every page of a tenant's connected accounts is read from an index, on a table with
realistic statistics: two tenants' accounts (a few busy apps and users, many quiet ones, a
few accounts that need reauth or are disabled), ANALYZEd on Postgres. No filter reads the
whole table or sorts the tenant's accounts; each reads an index that leads with the tenant
(and its column) and ends with `(created_at, id)`, from the cursor on (migration 0014)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from api.account_pages import AccountFilter, cursor_of, list_accounts
from models.db.ids import new_id
from models.db.tables import ConnectedAccount, Tenant
from tests.conftest import two_tenants_rows
from tests.plans import plan_of

pytestmark = pytest.mark.db  # and so in the Postgres pass too

ACCOUNTS_PER_TENANT = 8_000
APPS = ["slack"] * 8 + ["hubspot"] * 4 + ["pipedrive"] * 3 + ["zendesk", "github", "jira"]
STATUSES = ["active"] * 95 + ["needs_reauth"] * 4 + ["disabled"]
END = datetime(2026, 12, 1, 23, tzinfo=UTC)
_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]


def _rows(rng: random.Random, tenant_id: str) -> list[dict[str, Any]]:
    rows = []
    for i in range(ACCOUNTS_PER_TENANT):
        at = END - timedelta(minutes=ACCOUNTS_PER_TENANT - i)
        user = min(int(rng.paretovariate(0.6)), 2_000)
        rows.append(
            {
                "id": new_id("ca", now_ms=int(at.timestamp() * 1000)),
                "tenant_id": tenant_id,
                "app": rng.choice(APPS),
                "user_id": f"user-{user}",
                "status": rng.choice(STATUSES),
                "credentials_enc": "not read by a list",
                "source": "api",
                "created_at": at,
                "updated_at": at,
            }
        )
    return rows


@pytest.fixture(scope="module")
def many_accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Tenant]]:
    """A tenant with thousands of accounts, another tenant's beside them, statistics known
    (a database of this module's own: the plans depend on every row in it)."""
    rng = random.Random(5)
    folder = tmp_path_factory.mktemp("account-plans")
    with two_tenants_rows(folder, _accounts, lambda t: _rows(rng, t)) as (engine, tenant):
        yield engine, tenant


# A sort the plan may do: a user's accounts of one app, or as many (never the tenant's).
SMALL_SORT = 200
# Per filter, the indexes that may serve it (a combination: either of its columns').
FILTERS: dict[str, tuple[AccountFilter, tuple[str, ...]]] = {
    "none": (AccountFilter(), ("ix_account_tenant_created",)),
    "app": (AccountFilter(app="jira"), ("ix_account_list_app",)),
    "busy_app": (AccountFilter(app="slack"), ("ix_account_list_app",)),
    "user_id": (AccountFilter(user_id="user-40"), ("ix_account_list_user",)),
    "status": (AccountFilter(status="needs_reauth"), ("ix_account_list_status",)),
    "app_user": (
        AccountFilter(app="slack", user_id="user-1"),
        ("ix_account_list_user", "ix_account_list_app", "ix_account_lookup"),
    ),
    "app_status": (
        AccountFilter(app="hubspot", status="disabled"),
        ("ix_account_list_app", "ix_account_list_status"),
    ),
    "user_status": (
        AccountFilter(user_id="user-1", status="active"),
        ("ix_account_list_user", "ix_account_list_status"),
    ),
}


@pytest.mark.parametrize("from_cursor", [False, True], ids=["first_page", "from_a_cursor"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_each_filter_reads_an_index_newest_first(
    many_accounts: tuple[Engine, Tenant], name: str, from_cursor: bool
) -> None:
    # Given thousands of accounts of two tenants, a filter, and a cursor halfway down
    engine, tenant = many_accounts
    filters, indexes = FILTERS[name]
    cursor = None
    if from_cursor:
        accounts, _ = list_accounts(engine, tenant, AccountFilter(), None, 500)
        cursor = cursor_of(accounts[-1])
    # When a page is planned, as list_accounts asks for it
    plan = plan_of(
        engine,
        lambda: list_accounts(engine, tenant, filters, cursor, 100),
        "connected_account",
    )
    # Then it does not read the whole table, nor sort more than a few accounts
    assert not plan.scans_table, plan.lines
    if plan.sorts:
        assert plan.sort_rows is not None, plan.lines  # SQLite: no sort at all
        assert plan.sort_rows <= SMALL_SORT, plan.lines
    # And it reads an index of its filter's column (a combination, one of them)
    assert any(plan.uses(index) for index in indexes), plan.lines
    # And a cursor is where the index is read from, not a filter of the rows read
    if cursor is not None:
        assert any(_seeks_the_cursor(line) for line in plan.lines), plan.lines


def _seeks_the_cursor(line: str) -> bool:
    """Whether a plan line reads an index from `(created_at, id) < cursor` on (SQLite's
    `SEARCH ... (created_at,id)<(?,?)`, Postgres' `Index Cond: ... ROW(created_at, ...) <`)."""
    if not (line.startswith("SEARCH") or "Index Cond" in line):
        return False
    return "(created_at,id)<" in line or "ROW(created_at, (id)::text) <" in line
