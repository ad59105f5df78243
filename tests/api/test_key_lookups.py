"""What a wrong API key costs: a refused key is not looked up again for a while, and keys
nobody has shown valid are looked up on a few threads of their own, with a bounded queue;
past it, a 503 at once, while a tenant's own key still goes through."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, update
from sqlmodel import col

import api.key_lookups
from api.key_lookups import KeyLookups
from api.prometheus import REQUESTS_REFUSED
from api.tenant_cache import REFUSED_TTL_S, TenantCache
from models.db.engine import session_scope
from models.db.tables import Tenant
from models.errors import ApiError
from tests.api.conftest import Caller
from tests.api.test_errors import assert_error_shape


@pytest.fixture
def tenant_queries(app: FastAPI) -> Iterator[list[str]]:
    """The statements that read the tenant table, as the app's database receives them."""
    engine = app.state.engine
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM tenant" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_a_refused_key_is_not_looked_up_again_for_a_while(
    client: TestClient, tenant_queries: list[str]
) -> None:
    wrong = {"Authorization": "Bearer pt_" + "w" * 43}
    for _ in range(5):
        response = client.get("/function-calls", headers=wrong)
        assert response.status_code == 401
        assert_error_shape(response.json())
    assert len(tenant_queries) == 1


def test_a_key_taken_away_is_refused_after_the_cache_then_costs_no_query(
    caller: Caller, engine: Engine, tenant_queries: list[str]
) -> None:
    cache = caller.client.app.state.auth._cache  # type: ignore[attr-defined]
    assert caller.client.get("/function-calls", headers=caller.headers()).status_code == 200
    with session_scope(engine) as db:
        db.exec(
            update(Tenant).where(col(Tenant.id) == caller.tenant.id).values(api_key_hash="gone")
        )
    cache._clock = lambda: 1e12  # every entry has expired
    for _ in range(3):
        assert caller.client.get("/function-calls", headers=caller.headers()).status_code == 401
    assert len(tenant_queries) == 2  # the first sign-in and one look after it expired


def test_a_refusal_ends_after_its_ttl() -> None:
    now = [0.0]
    cache = TenantCache(clock=lambda: now[0])
    cache.refuse("h")
    assert cache.refused("h")
    now[0] += REFUSED_TTL_S + 0.1
    assert not cache.refused("h")


class Blocked:
    """Stands in for the database's key lookup: each one waits until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[str] = []

    def __call__(self, _engine: Engine, key_hash: str) -> Tenant | None:
        self.started.append(key_hash)
        assert self.release.wait(10)
        return None


@pytest.fixture
def blocked(monkeypatch: pytest.MonkeyPatch) -> Blocked:
    lookups = Blocked()
    monkeypatch.setattr(api.key_lookups, "lookup", lookups)
    return lookups


def test_past_the_slots_and_the_queue_a_lookup_is_a_503_at_once(
    blocked: Blocked, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    lookups = KeyLookups(engine, slots=2, queue=3)
    shed = REQUESTS_REFUSED.labels("unknown_key_lookups")
    before = shed._value.get()

    async def run() -> tuple[list[Any], list[ApiError], str]:
        waiting = [asyncio.create_task(lookups.unknown(f"k{i}")) for i in range(5)]
        while len(blocked.started) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the other three are queued for a slot
        refused = []
        for i in range(3):
            with pytest.raises(ApiError) as caught:
                await lookups.unknown(f"extra{i}")
            refused.append(caught.value)
        # A key seen valid is not queued behind them
        known = asyncio.create_task(lookups.known("seen-valid"))
        while "seen-valid" not in blocked.started:
            await asyncio.sleep(0.01)
        started = len(blocked.started)
        blocked.release.set()
        results = await asyncio.gather(*waiting, known)
        return results, refused, f"{started} started before the release"

    with caplog.at_level(logging.WARNING, logger="passthru.api"):
        results, refused, started = asyncio.run(run())
    assert results == [None] * 6
    assert started == "3 started before the release"  # two slots and the known key
    assert len(blocked.started) == 6  # the refused three were never looked up
    for error in refused:
        assert (error.status_code, error.error) == (503, "unavailable")
        assert error.headers == {"Retry-After": "1"}
        assert error.details[0].field == "Authorization"
    assert shed._value.get() - before == 3
    warnings = [r for r in caplog.records if "answered 503" in r.getMessage()]
    assert len(warnings) == 1  # at most one per WARN_EVERY_S


def test_a_flood_of_made_up_keys_is_a_503_in_the_error_shape_and_a_tenant_still_gets_in(
    caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP, on one event loop as under uvicorn: the lookup slots held and the queue
    full, made-up keys sent at once are answered 503 at once, and a tenant whose key is
    cached is served; once the slots free, the held ones get their 401."""
    assert caller.client.get("/function-calls", headers=caller.headers()).status_code == 200
    blocked = Blocked()
    monkeypatch.setattr(api.key_lookups, "lookup", blocked)
    app = caller.client.app
    app.state.auth._lookups = KeyLookups(app.state.engine, slots=1, queue=2)  # type: ignore[attr-defined]

    async def run() -> tuple[list[httpx.Response], httpx.Response, list[httpx.Response]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:

            def made_up(i: int) -> Any:
                key = f"pt_{i:043d}"
                return client.get("/function-calls", headers={"Authorization": f"Bearer {key}"})

            # Ten arrive together: one takes the slot, two wait, seven are turned away
            flood = [asyncio.create_task(made_up(i)) for i in range(10)]
            while not blocked.started:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            answered = [task for task in flood if task.done()]
            tenant = await client.get("/function-calls", headers=caller.headers())
            blocked.release.set()
            held = await asyncio.gather(*(task for task in flood if task not in answered))
            return [task.result() for task in answered], tenant, list(held)

    try:
        refused, tenant, held = asyncio.run(run())
    finally:
        blocked.release.set()
    assert [r.status_code for r in refused] == [503] * 7
    for response in refused:
        assert response.headers["retry-after"] == "1"
        assert_error_shape(response.json())
        assert response.json()["error_details"][0]["field"] == "Authorization"
    assert tenant.status_code == 200
    assert [r.status_code for r in held] == [401] * 3
    assert len(blocked.started) == 3
