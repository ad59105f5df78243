"""What only the async client has: coroutines, an async generator, an async context."""

from __future__ import annotations

import asyncio
import inspect

import httpx
from passthru_client import AsyncPassthru, FunctionCall

from tests.sdk.conftest import API_KEY, BASE_URL, FakeApi, call_json, reply


def test_async_client_is_awaited_and_iterated_asynchronously(api: FakeApi) -> None:
    api.script(
        reply(503, {"error": "unavailable", "error_details": []}, {"Retry-After": "1"}),
        reply(200, {"items": [call_json("fc_2"), call_json("fc_1")], "next_cursor": None}),
    )

    async def main() -> tuple[list[str], bool]:
        async with AsyncPassthru(
            API_KEY, BASE_URL, transport=httpx.MockTransport(api), sleep=api.time.async_sleep
        ) as client:
            calls = client.iter_calls(app="slack")
            assert inspect.isasyncgen(calls)
            ids = [call.id async for call in calls]
        return ids, client.is_closed

    ids, closed = asyncio.run(main())

    assert ids == ["fc_2", "fc_1"]
    assert closed
    assert api.time.sleeps == [1.0]  # the retry slept through the injected async sleep


def test_async_accounts_are_iterated_page_by_page(api: FakeApi) -> None:
    account = {"app": "slack", "user_id": "u", "status": "active"}
    api.script(
        reply(200, {"items": [{**account, "id": "ca_2"}], "next_cursor": "c1"}),
        reply(200, {"items": [{**account, "id": "ca_1"}], "next_cursor": None}),
    )

    async def main() -> list[str]:
        async with AsyncPassthru(API_KEY, BASE_URL, transport=httpx.MockTransport(api)) as pt:
            accounts = pt.iter_accounts(app="slack")
            assert inspect.isasyncgen(accounts)
            ids = []
            async for a in accounts:
                ids.append(a.id)
                if len(ids) == 1:  # the next page is read only once this one is used
                    assert len(api.requests) == 1
            return ids

    assert asyncio.run(main()) == ["ca_2", "ca_1"]
    assert [r.url.params.get("cursor") for r in api.requests] == [None, "c1"]


def test_async_calls_run_concurrently(api: FakeApi) -> None:
    api.script(lambda r: httpx.Response(200, json=call_json(r.url.path.rsplit("/", 1)[-1])))

    async def main() -> list[FunctionCall]:
        async with AsyncPassthru(API_KEY, BASE_URL, transport=httpx.MockTransport(api)) as pt:
            return await asyncio.gather(*(pt.get_call(f"fc_{i}") for i in range(5)))

    calls = asyncio.run(main())
    assert [c.id for c in calls] == [f"fc_{i}" for i in range(5)]
