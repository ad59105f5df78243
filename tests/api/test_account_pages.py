"""Connected accounts a page at a time (`GET /connected-accounts`, `GET /rate-limits`):
`limit` and `cursor`, their refusals, every account once in order whatever is inserted or
deleted between pages, and the filters under paging."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from api.account_pages import MAX_PAGE_SIZE, PAGE_SIZE
from models.accounts.states import AccountStatus
from models.db.engine import session_scope
from models.db.tables import ConnectedAccount
from models.ratelimit.store import MemoryLimiter
from tests.api.conftest import START, Caller, make_accounts
from tests.api.test_errors import assert_error_shape

pytestmark = pytest.mark.db  # row values and times compared on Postgres too


def pages(caller: Caller, path: str, query: str = "") -> list[dict[str, Any]]:
    """Every page of `path` under `query`, following next_cursor to the last."""
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = query + (f"&cursor={cursor}" if cursor else "")
        response = caller.client.get(f"{path}?{params}", headers=caller.headers())
        assert response.status_code == 200, response.text
        page = response.json()
        seen.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def ids_of(found: list[dict[str, Any]], key: str = "id") -> list[str]:
    return [item[key] for page in found for item in page["items"]]


def refused(caller: Caller, path: str, field: str) -> None:
    response = caller.client.get(path, headers=caller.headers())
    assert response.status_code == 400, (path, response.text)
    assert_error_shape(response.json(), "invalid_params")
    assert [d["field"] for d in response.json()["error_details"]] == [field], path


# --- GET /connected-accounts -----------------------------------------------------------


def test_pages_hold_each_account_once_newest_first(caller: Caller, engine: Engine) -> None:
    # Given more accounts than a page holds, pairs of them made at the same instant
    made = make_accounts(engine, caller.tenant, 2 * PAGE_SIZE + 7)
    # When they are read a page of the default size at a time
    found = pages(caller, "/connected-accounts")
    # Then each account comes once, newest first (the id breaking ties), in three pages
    assert [len(p["items"]) for p in found] == [PAGE_SIZE, PAGE_SIZE, 7]
    assert ids_of(found) == made
    # And small pages see the same order
    assert ids_of(pages(caller, "/connected-accounts", "limit=3")) == made


def test_a_page_holds_up_to_500(caller: Caller, engine: Engine) -> None:
    made = make_accounts(engine, caller.tenant, MAX_PAGE_SIZE + 1)
    found = pages(caller, "/connected-accounts", f"limit={MAX_PAGE_SIZE}")
    assert [len(p["items"]) for p in found] == [MAX_PAGE_SIZE, 1]
    assert ids_of(found) == made
    exactly = pages(caller, "/connected-accounts", "limit=1&app=slack&user_id=user-0")
    assert [len(p["items"]) for p in exactly] == [1]  # a full last page says so


@pytest.mark.parametrize("path", ["/connected-accounts", "/rate-limits"])
@pytest.mark.parametrize("limit", ["0", "-1", str(MAX_PAGE_SIZE + 1), "100000", "ten", ""])
def test_a_limit_outside_1_to_500_is_a_400_naming_it(caller: Caller, path: str, limit: str) -> None:
    refused(caller, f"{path}?limit={limit}", "limit")


def _encoded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_CURSORS = [
    "nope",  # not base64 of a position
    "ca_01jxyz",  # an account id is not a cursor
    "%27%3B--",  # markup and SQL are text that does not decode
    "%3Cscript%3E",
    "%C3%A9t%C3%A9",  # beyond ASCII
    _encoded(b"123.ca_x") + "!",  # a cursor with a character added
    _encoded(b"12x.ca_x"),  # decodes, but not to a position
    _encoded(b"123."),
    _encoded(b"123.ca_x; DROP TABLE connected_account"),
    _encoded(b"99999999999999999999.ca_x"),  # past any time
    _encoded(b"1." + b"a" * 41),  # an id longer than any
    "x" * 600,
]


@pytest.mark.parametrize("path", ["/connected-accounts", "/rate-limits"])
@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_cursor_no_page_gave_is_a_400_naming_it(caller: Caller, path: str, cursor: str) -> None:
    caller.connect()
    refused(caller, f"{path}?cursor={cursor}", "cursor")


def test_inserts_and_deletes_between_pages_shift_nothing(caller: Caller, engine: Engine) -> None:
    # Given five accounts, and the first page of two read
    made = make_accounts(engine, caller.tenant, 5)
    first = caller.client.get("/connected-accounts?limit=2", headers=caller.headers()).json()
    assert [a["id"] for a in first["items"]] == made[:2]
    # When new accounts are connected, and the account the cursor ends on is deleted
    newer = [caller.connect(user=f"new-{i}") for i in range(3)]
    deleted = caller.client.delete(f"/connected-accounts/{made[1]}", headers=caller.headers())
    assert deleted.status_code == 204
    # Then the next pages carry on from where the first ended, each account once
    rest = pages(caller, "/connected-accounts", f"limit=2&cursor={first['next_cursor']}")
    assert ids_of(rest) == made[2:]
    # And the new ones are on a new first page, newest first
    again = ids_of(pages(caller, "/connected-accounts", "limit=2"))
    assert again == [*reversed(newer), made[0], *made[2:]]


def test_filters_hold_on_every_page(caller: Caller, engine: Engine) -> None:
    # Given accounts of three apps, four users and three statuses
    apps = ["slack", "hubspot", "pipedrive"]
    statuses = list(AccountStatus)
    made = make_accounts(
        engine,
        caller.tenant,
        40,
        app=lambda i: apps[i % 3],
        user=lambda i: f"user-{i % 4}",
        status=lambda i: statuses[i % 5 % 3],
    )
    with session_scope(engine) as session:
        rows = {a: session.get(ConnectedAccount, a) for a in made}
        shown = {
            a: (row.app, row.user_id, row.status.value)
            for a, row in rows.items()
            if row is not None
        }
    cases = {
        "app=hubspot": lambda s: s[0] == "hubspot",
        "user_id=user-3": lambda s: s[1] == "user-3",
        "status=needs_reauth": lambda s: s[2] == "needs_reauth",
        "app=slack&user_id=user-2": lambda s: s[:2] == ("slack", "user-2"),
        "app=pipedrive&status=disabled": lambda s: (s[0], s[2]) == ("pipedrive", "disabled"),
        "app=slack&user_id=user-1&status=active": lambda s: s == ("slack", "user-1", "active"),
        "app=zendesk": lambda s: False,
    }
    for query, keep in cases.items():
        # When each filter is read two at a time
        found = pages(caller, "/connected-accounts", f"{query}&limit=2")
        # Then its pages hold exactly its accounts, each once, newest first
        assert ids_of(found) == [a for a in made if keep(shown[a])], query
        for page in found:
            assert all(keep((i["app"], i["user_id"], i["status"])) for i in page["items"])


def test_another_tenants_cursor_shows_nothing_of_theirs(
    caller: Caller, make_caller: Callable[[], Caller], engine: Engine
) -> None:
    # Given two tenants' accounts made over the same minutes, and a cursor of the other's
    mine = make_accounts(engine, caller.tenant, 6)
    other = make_caller()
    theirs = make_accounts(engine, other.tenant, 6, start=START + timedelta(seconds=1))
    their_cursor = other.client.get("/connected-accounts?limit=2", headers=other.headers())
    cursor = their_cursor.json()["next_cursor"]
    # When the first tenant sends it
    found = pages(caller, "/connected-accounts", f"limit=2&cursor={cursor}")
    # Then it reads its own accounts from that point in time on, none of the other's
    assert set(ids_of(found)) <= set(mine)
    assert not set(ids_of(found)) & set(theirs)


# --- GET /rate-limits -----------------------------------------------------------------------


class CountingLimiter(MemoryLimiter):
    """A limiter that records how many keys each read asks for."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: int(time.time() * 1000))
        self.reads: list[int] = []

    def read(self, keys: Sequence[str]) -> tuple[int, list[int | None]]:
        self.reads.append(len(keys))
        return super().read(keys)


def test_rate_limits_page_over_the_accounts(app: FastAPI, caller: Caller, engine: Engine) -> None:
    # Given Slack accounts (its app declares limits) among accounts of an app without any
    limiter = CountingLimiter()
    app.state.limiter = limiter
    app.state.settings = app.state.settings.model_copy(update={"tenant_rate_limit": "10/1"})
    make_accounts(engine, caller.tenant, 9, app=lambda i: "demo" if i % 3 == 0 else "slack")
    limited = ids_of(pages(caller, "/connected-accounts", "app=slack"))
    assert len(limited) == 6
    # When /rate-limits is read four accounts at a time
    found = pages(caller, "/rate-limits", "limit=4")
    # Then each account with limits comes once, newest first, over the pages
    assert len(found) == 3
    assert ids_of(found, "connected_account_id") == limited
    # And each page read its own accounts' keys alone, once, with the cap on every page
    assert all(page["tenant_cap"] is not None and page["as_of"] for page in found)
    assert len(limiter.reads) == 3
    assert max(limiter.reads) < 4 * 10  # a few keys per account, never all nine accounts'


def test_rate_limits_are_one_page_of_100_accounts_by_default(
    app: FastAPI, caller: Caller, engine: Engine
) -> None:
    app.state.limiter = CountingLimiter()
    made = make_accounts(engine, caller.tenant, PAGE_SIZE + 1)
    first = caller.client.get("/rate-limits", headers=caller.headers()).json()
    assert [i["connected_account_id"] for i in first["items"]] == made[:PAGE_SIZE]
    assert first["next_cursor"] is not None
    assert first["tenant_cap"] is None
