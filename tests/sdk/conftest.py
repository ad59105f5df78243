"""Fixtures of the SDK's unit tests: a scripted stand-in API behind httpx.MockTransport, a
fake clock and sleep, and both clients behind one synchronous face so each behaviour is
tested on `Passthru` and `AsyncPassthru` alike."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from passthru_client import AsyncPassthru, Passthru

API_KEY = "pt_test_key"
BASE_URL = "http://passthru.test"

Responder = Callable[[httpx.Request], httpx.Response]
Reply = httpx.Response | Exception | Responder


def reply(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer (a fresh one per request, as httpx reads each response once)."""

    def respond(_: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return respond


def error_body(error: str, *details: tuple[str, str]) -> dict[str, Any]:
    return {"error": error, "error_details": [{"field": f, "message": m} for f, m in details]}


def call_json(call_id: str = "fc_1", status: str = "queued", **extra: Any) -> dict[str, Any]:
    """A call as `GET /function-calls/{id}` answers it."""
    done = status in ("completed", "failed", "cancelled")
    return {
        "id": call_id,
        "status": status,
        "function": "slack-passthrough-request",
        "app": "slack",
        "method": "GET",
        "url": "https://slack.com/api/conversations.list",
        "user_id": "user-42",
        "connected_account_id": "ca_1",
        "batch_id": None,
        "network_code": "200" if status == "completed" else None,
        "output": {"ok": True} if status == "completed" else None,
        "output_truncated": False,
        "headers": {"content-type": "application/json"} if done else None,
        "error": None,
        "error_message": None,
        "duration_ms": 12 if done else None,
        "attempt_count": 1 if done else 0,
        "next_attempt_at": None,
        "attempts": [],
        "created_at": "2025-01-02T03:04:05.123456Z",
        "started_at": "2025-01-02T03:04:05.200000Z" if done else None,
        "finished_at": "2025-01-02T03:04:05.300000+00:00" if done else None,
        **extra,
    }


@dataclass
class FakeTime:
    """A clock that only moves when slept on (or when the stand-in API holds a long-poll)."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


@dataclass
class FakeApi:
    """Answers requests from a script, in order (the last reply repeats), and records
    every request."""

    time: FakeTime
    replies: list[Reply] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        assert self.replies, f"unexpected request {request.method} {request.url}"
        current = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(current, Exception):
            raise current
        if isinstance(current, httpx.Response):
            return current
        return current(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


class Blocking:
    """`AsyncPassthru` with `Passthru`'s synchronous face: each coroutine runs to its end on
    one event loop, and an async generator is drained into a list."""

    def __init__(self, client: AsyncPassthru) -> None:
        self._client = client
        self._runner = asyncio.Runner()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if inspect.isasyncgen(result):
                return iter(self._runner.run(_drain(result)))
            if inspect.iscoroutine(result):
                return self._runner.run(result)
            return result

        return call

    def shutdown(self) -> None:
        self._runner.run(self._client.close())
        self._runner.close()


async def _drain(gen: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in gen]


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def api(fake_time: FakeTime) -> FakeApi:
    return FakeApi(fake_time)


MakeClient = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def make_client(request: pytest.FixtureRequest, api: FakeApi) -> Iterator[MakeClient]:
    """Build a client of the stand-in API: a Passthru, or an AsyncPassthru behind
    `Blocking` (keyword arguments go to the constructor)."""
    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("clock", api.time.clock)
        if request.param == "sync":
            client: Any = Passthru(
                API_KEY,
                BASE_URL,
                transport=httpx.MockTransport(api),
                sleep=api.time.sleep,
                **kwargs,
            )
        else:
            client = Blocking(
                AsyncPassthru(
                    API_KEY,
                    BASE_URL,
                    transport=httpx.MockTransport(api),
                    sleep=api.time.async_sleep,
                    **kwargs,
                )
            )
        made.append(client)
        return client

    yield make
    for client in made:
        if isinstance(client, Blocking):
            client.shutdown()
        else:
            client.close()


@pytest.fixture
def client(make_client: MakeClient) -> Any:
    """A client whose default end user is "user-42"."""
    return make_client(user_id="user-42")
