"""PASSTHRU_DEFAULT_WAIT_S: how long a submission waits when `Prefer` asks nothing. First the
decision alone (`prefer.submission_wait`, pure), then through the API with a waiter that
stands in for the call-done subscription: it records each wait and, when told to, ends the
call first as a worker would. No test measures time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.prefer import SubmissionWait, parse_prefer, submission_wait
from api.quotas import Quotas
from api.waiter import Watch
from tests.api.conftest import Caller, finish, log

SLACK = ("/slack-passthrough-request", {"method": "GET", "url": "conversations.list"})
SDK_FORM = (
    "/function-calls",
    {
        "function": "slack-passthrough-request",
        "params": {"method": "GET", "url": "conversations.list"},
    },
)
ROUTES = pytest.mark.parametrize(("path", "body"), [SLACK, SDK_FORM], ids=["app", "sdk-form"])
RESULT_SHAPE = {"id", "status", "network_code", "output", "headers", "error", "error_message"}

# --- the decision -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefer", "default_s", "max_s", "wait"),
    [
        (None, 0.0, 60.0, SubmissionWait(0.0, asked=False)),
        (None, 10.0, 60.0, SubmissionWait(10.0, asked=False)),
        ("", 10.0, 60.0, SubmissionWait(10.0, asked=False)),
        ("return=minimal", 10.0, 60.0, SubmissionWait(10.0, asked=False)),  # unknown: ignored
        (None, 30.0, 5.0, SubmissionWait(5.0, asked=False)),  # PASSTHRU_MAX_WAIT_S caps it
        ("respond-async", 10.0, 60.0, SubmissionWait(0.0, asked=True)),
        ("respond-async", 0.0, 60.0, SubmissionWait(0.0, asked=True)),
        ("wait=3", 10.0, 60.0, SubmissionWait(3.0, asked=True)),
        ("wait=30", 10.0, 60.0, SubmissionWait(30.0, asked=True)),
        ("wait=0", 10.0, 60.0, SubmissionWait(0.0, asked=True)),
        ("wait=45", 10.0, 20.0, SubmissionWait(20.0, asked=True)),
        ("respond-async, wait=2", 10.0, 60.0, SubmissionWait(2.0, asked=True)),
        ("wait=2, respond-async", 0.0, 60.0, SubmissionWait(2.0, asked=True)),
    ],
)
def test_prefer_wins_over_the_default_and_every_wait_is_capped(
    prefer: str | None, default_s: float, max_s: float, wait: SubmissionWait
) -> None:
    assert submission_wait(parse_prefer(prefer, max_s), default_s, max_s) == wait


# --- through the API --------------------------------------------------------------------------


@dataclass
class RecordingWaiter:
    """Stands in for `CallWaiter`: records how long each submission waits and, if
    `finishes`, ends the call (completed, "200") before looking, as a worker would."""

    engine: Engine
    finishes: bool = True
    waits: list[float] = field(default_factory=list)

    @contextmanager
    def watch(self, call_id: str) -> Iterator[Watch]:
        yield Watch(call_id)

    async def wait(
        self,
        call_id: str,
        timeout_s: float,
        is_final: Callable[[], Awaitable[bool]],
        watch: Watch | None = None,
    ) -> bool:
        self.waits.append(timeout_s)
        if self.finishes:
            finish(self.engine, call_id, "200")
        return await is_final()


@dataclass
class Served:
    caller: Caller
    waiter: RecordingWaiter
    app: FastAPI

    def post(self, path: str, body: dict[str, Any], prefer: str | None = None) -> Any:
        extra = {"Prefer": prefer} if prefer is not None else {}
        return self.caller.client.post(path, json=body, headers=self.caller.headers(**extra))


@pytest.fixture
def served(
    make_app: Callable[..., FastAPI], engine: Engine, caller: Caller
) -> Callable[..., Served]:
    """The API with these settings and a recording waiter, and the tenant's account."""

    def make(finishes: bool = True, **settings: Any) -> Served:
        app = make_app(**settings)
        waiter = RecordingWaiter(engine, finishes)
        app.state.waiter = waiter
        own = Caller(TestClient(app), caller.tenant, caller.key)
        own.connect()
        return Served(own, waiter, app)

    return make


@ROUTES
def test_with_a_default_wait_a_plain_post_answers_the_result(
    served: Callable[..., Served], path: str, body: dict[str, Any]
) -> None:
    # Given PASSTHRU_DEFAULT_WAIT_S=10
    api = served(default_wait_s=10)
    # When a call is submitted without Prefer, and ends within the wait
    response = api.post(path, body)
    # Then the answer is 200 in the Integry shape plus id, after waiting the default
    assert response.status_code == 200, response.text
    assert set(response.json()) == RESULT_SHAPE
    assert (response.json()["status"], response.json()["network_code"]) == ("completed", "200")
    assert api.waiter.waits == [10.0]
    # And no preference is said to be applied: none was sent
    assert "Preference-Applied" not in response.headers


@ROUTES
def test_respond_async_answers_202_at_once_whatever_the_default(
    served: Callable[..., Served], path: str, body: dict[str, Any]
) -> None:
    api = served(default_wait_s=10)
    response = api.post(path, body, prefer="respond-async")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert response.headers["Preference-Applied"] == "respond-async"
    assert api.waiter.waits == []


@pytest.mark.parametrize(
    ("prefers", "waits", "status_code"),
    [
        (["handling=lenient", "respond-async"], [], 202),
        (["respond-async", "wait=2"], [2.0], 200),
        (["respond-async", "wait=abc"], [], 400),
    ],
)
def test_preferences_in_several_prefer_headers_are_one_list(
    served: Callable[..., Served], prefers: list[str], waits: list[float], status_code: int
) -> None:
    # Given a default wait, and preferences sent in one Prefer header each (RFC 7240: the
    # same as one header listing them)
    api = served(default_wait_s=10)
    headers = [*api.caller.headers().items(), *(("Prefer", p) for p in prefers)]
    # When submitted / Then each is heard, as if sent in one header
    response = api.caller.client.post(SLACK[0], json=SLACK[1], headers=headers)
    assert response.status_code == status_code, response.text
    assert api.waiter.waits == waits


@pytest.mark.parametrize(
    ("prefer", "waits", "status_code"),
    [("wait=3", [3.0], 200), ("wait=0", [], 202), ("respond-async, wait=2", [2.0], 200)],
)
def test_prefer_wait_overrides_the_default(
    served: Callable[..., Served], prefer: str, waits: list[float], status_code: int
) -> None:
    api = served(default_wait_s=10)
    response = api.post(*SLACK, prefer=prefer)
    assert response.status_code == status_code
    assert api.waiter.waits == waits
    assert response.headers["Preference-Applied"] == prefer


def test_the_default_wait_is_served_at_most_max_wait(served: Callable[..., Served]) -> None:
    api = served(default_wait_s=30, max_wait_s=5)
    assert api.post(*SLACK).status_code == 200
    assert api.waiter.waits == [5.0]


def test_without_a_default_a_plain_post_answers_202_at_once(
    served: Callable[..., Served],
) -> None:
    api = served()
    response = api.post(*SLACK)
    assert response.status_code == 202
    assert response.json()["function"] == "slack-passthrough-request"
    assert api.waiter.waits == []


def test_a_default_wait_that_runs_out_answers_202_where_the_call_stands(
    served: Callable[..., Served],
) -> None:
    # Given a default wait, and a call that does not end within it
    api = served(finishes=False, default_wait_s=10)
    # When it is submitted without Prefer
    response = api.post(*SLACK)
    # Then it waited, and the answer is the call as a 202 shows it
    assert api.waiter.waits == [10.0]
    assert response.status_code == 202
    assert (response.json()["status"], response.json()["app"]) == ("queued", "slack")


def test_a_default_wait_beyond_the_tenants_long_polls_answers_202_instead(
    served: Callable[..., Served],
) -> None:
    # Given a default wait, and a tenant holding its only long poll
    api = served(default_wait_s=10, tenant_max_waits=1)
    quotas: Quotas = api.app.state.quotas
    with quotas.waiting(api.caller.tenant.id, "wait"):
        # When a call is submitted without Prefer
        plain = api.post(*SLACK)
        # Then it is accepted and written, answered at once without waiting
        assert plain.status_code == 202, plain.text
        assert plain.json()["status"] == "queued"
        assert api.waiter.waits == []
        # While a wait asked for by Prefer is refused as before, and not written
        asked = api.post(*SLACK, prefer="wait=5")
        assert asked.status_code == 429
        assert asked.json()["error_details"][0]["field"] == "Prefer"
        assert [c["id"] for c in log(api.caller)["items"]] == [plain.json()["id"]]
    # And once the long poll is free, the default wait is served again
    assert api.post(*SLACK).status_code == 200
    assert api.waiter.waits == [10.0]


def test_batches_never_wait(served: Callable[..., Served]) -> None:
    api = served(default_wait_s=10)
    response = api.post("/function-calls/batch", {"calls": [SDK_FORM[1]] * 2})
    assert response.status_code == 202
    assert len(response.json()["accepted"]) == 2
    assert api.waiter.waits == []
