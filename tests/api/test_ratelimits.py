"""`GET /rate-limits`: a tenant sees its accounts' limits, use and pauses; nothing else."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI

from models.catalog.apps import Catalog
from models.ratelimit.rules import parse_rate, pause_key, rules_for, tenant_cap_rule
from models.ratelimit.store import Ask, MemoryLimiter
from tests.api.conftest import Caller
from tests.api.test_errors import assert_error_shape

NOW_MS = int(time.time() * 1000)


def test_limits_use_and_pauses_per_account(
    app: FastAPI, caller: Caller, make_caller: Callable[[], Caller]
) -> None:
    # Given a Slack account that has booked 3 slots of its conversations limit and is
    # paused by Slack for 30 s, and another tenant's Slack account
    limiter = MemoryLimiter(clock=lambda: NOW_MS)
    app.state.limiter = limiter
    account = caller.connect("slack")
    other = make_caller()
    other.connect("slack")
    catalog: Catalog = app.state.catalog
    slack = catalog.get("slack")
    assert slack is not None
    rules = rules_for(
        slack, tenant_id=caller.tenant.id, account_id=account, path="/api/conversations.list"
    )
    key = pause_key(slack, account)
    limiter.book_many([Ask(rules, key)] * 3, near_ms=600_000, horizon_ms=600_000)
    limiter.pause(key, 30_000)

    # When the tenant asks
    response = caller.client.get("/rate-limits", headers=caller.headers())

    # Then it sees its own account only, with each declared limit, its use and the pause
    assert response.status_code == 200, response.text
    body = response.json()
    [item] = body["items"]
    assert item["app"] == "slack"
    assert item["connected_account_id"] == account
    assert datetime.fromisoformat(item["paused_until"]).timestamp() * 1000 == NOW_MS + 30_000
    by_path = {limit["path"]: limit for limit in item["limits"]}
    conversations = by_path["^/api/conversations\\."]
    assert (conversations["limit"], conversations["period_s"]) == (20, 60)
    # Three calls booked 3 s apart: the next free slot is 9 s away; the account-wide limit
    # (one per 1.2 s) has its slots taken up to the third call's, 7.2 s away
    assert (conversations["in_use"], conversations["next_free_in_ms"]) == (3, 9_000)
    assert (by_path[None]["in_use"], by_path[None]["next_free_in_ms"]) == (6, 7_200)


def test_an_account_of_an_app_without_limits_is_listed_only_when_paused(
    app: FastAPI, caller: Caller
) -> None:
    app.state.limiter = MemoryLimiter(clock=lambda: NOW_MS)
    caller.connect("demo")
    assert caller.client.get("/rate-limits", headers=caller.headers()).json()["items"] == []


def test_redis_away_is_a_503_in_the_error_shape(caller: Caller) -> None:
    # The test app's Redis URL points at a closed port
    caller.connect("slack")
    response = caller.client.get("/rate-limits", headers=caller.headers())
    assert response.status_code == 503
    assert_error_shape(response.json(), "rate_limiter_unavailable")
    # It names the error's class, never its message, which names internal hosts and ports
    message = response.json()["error_details"][0]["message"]
    assert "Error)" in message
    assert "127.0.0.1" not in response.text
    assert "localhost" not in response.text


def test_the_operators_tenant_cap_is_shown(app: FastAPI, caller: Caller) -> None:
    limiter = MemoryLimiter(clock=lambda: NOW_MS)
    app.state.limiter = limiter
    app.state.settings = app.state.settings.model_copy(update={"tenant_rate_limit": "10/1"})
    cap = parse_rate("10/1")
    assert cap is not None
    rule = tenant_cap_rule(cap, caller.tenant.id, "bulk")
    limiter.book_many([Ask([rule], "pause")] * 4, near_ms=60_000, horizon_ms=60_000)
    body = caller.client.get("/rate-limits", headers=caller.headers()).json()
    assert body["tenant_cap"] == {
        "limit": 10,
        "period_s": 1.0,
        "burst": 1,
        "lanes": {
            "interactive": {"in_use": 0, "next_free_in_ms": 0},
            "bulk": {"in_use": 4, "next_free_in_ms": 400},
        },
    }
