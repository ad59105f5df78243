"""PASSTHRU_DEFAULT_WAIT_S through the whole system (API, real worker, stand-in upstream): a
submission without `Prefer` answers the result in the seed's shape, `Prefer: respond-async`
answers 202 before the call has run; the SDK follows the same rules.

These tests assert shapes and order, never durations: the upstream holds its answer until
the test has seen the 202."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator

import pytest
from passthru_client import Passthru

from tests.e2e.conftest import WAIT_S, Caller, OwnStack, Stack, new_caller
from tests.e2e.upstream import SLACK_CONVERSATIONS, Reply, Seen, Upstream

# `once` (SQLite pass only): the default wait changes the answer's shape and order, not what is
# stored or how it is read.
pytestmark = pytest.mark.once

RESULT_SHAPE = {"id", "status", "network_code", "output", "headers", "error", "error_message"}
SLACK = "slack-passthrough-request"


@pytest.fixture(scope="module")
def waiting(own_stack: OwnStack) -> Iterator[Stack]:
    """A stack of its own whose API waits for a call's result by default."""
    with own_stack("default-wait-logs", {"PASSTHRU_DEFAULT_WAIT_S": str(WAIT_S)}) as s:
        yield s


@pytest.fixture
def owner(waiting: Stack) -> Iterator[Caller]:
    with new_caller(waiting, "dw") as c:
        yield c


def held_until(upstream: Upstream, path: str) -> threading.Event:
    """Make `GET /api/{path}` answer Slack's conversations only once the event is set."""
    release = threading.Event()

    def answer(_: Seen) -> Reply:
        release.wait(WAIT_S)
        return Reply(200, SLACK_CONVERSATIONS)

    upstream.script("GET", f"/api/{path}", answer)
    return release


@pytest.mark.parametrize("form", ["app", "sdk-form"])
def test_a_plain_post_answers_200_in_the_seeds_shape(
    waiting: Stack, owner: Caller, form: str
) -> None:
    # Given a user with a connected Slack account, and an API that waits by default
    user = f"u-dw-{secrets.token_hex(3)}"
    owner.connect("slack", user, {"access_token": "xoxb-default-wait"})
    url = "https://slack.com/api/conversations.list?limit=2"

    # When the seed's example is submitted as it is, without Prefer
    if form == "app":
        r = owner.http.post(
            f"/{SLACK}", headers={"X-User-ID": user}, json={"method": "GET", "url": url}
        )
    else:
        body = {"function": SLACK, "params": {"method": "GET", "url": url}}
        r = owner.http.post("/function-calls", headers={"X-User-ID": user}, json=body)

    # Then the answer is the upstream's, in the Integry shape plus id
    assert r.status_code == 200, r.text
    assert "preference-applied" not in r.headers
    result = r.json()
    assert set(result) == RESULT_SHAPE
    assert (result["status"], result["network_code"]) == ("completed", "200")
    assert result["output"] == SLACK_CONVERSATIONS
    assert result["headers"]["content-type"] == "application/json"


def test_respond_async_answers_202_before_the_call_runs(waiting: Stack, owner: Caller) -> None:
    # Given an upstream that answers only when told to
    path = f"held.{secrets.token_hex(3)}"
    release = held_until(waiting.upstream, path)
    user = f"u-dw-{secrets.token_hex(3)}"
    owner.connect("slack", user, {"access_token": "xoxb-default-wait"})
    try:
        # When a call says Prefer: respond-async
        r = owner.http.post(
            f"/{SLACK}",
            headers={"X-User-ID": user, "Prefer": "respond-async"},
            json={"method": "GET", "url": path},
        )
        # Then it is answered 202 with the queued call, while the upstream still holds it
        assert r.status_code == 202, r.text
        assert r.headers["preference-applied"] == "respond-async"
        accepted = r.json()
        assert (accepted["status"], accepted["app"]) == ("queued", "slack")
        assert accepted["network_code"] is None
    finally:
        release.set()
    # And the call then ends with the upstream's answer
    call = owner.wait(accepted["id"])
    assert (call["status"], call["network_code"]) == ("completed", "200")


def test_the_sdk_takes_either_answer(waiting: Stack, owner: Caller) -> None:
    user = f"u-dw-sdk-{secrets.token_hex(3)}"
    with Passthru(owner.api_key, waiting.base_url, user_id=user) as pt:
        pt.connect_account("slack", {"access_token": "xoxb-default-wait"})
        # Without wait: no Prefer, so the server's default wait answers the finished call
        call = pt.invoke_function(SLACK, {"method": "GET", "url": "conversations.list"})
        assert (call.status, call.network_code, call.done) == ("completed", "200", True)
        assert call.output == SLACK_CONVERSATIONS

        # With wait=0: Prefer: respond-async, answered before the upstream has answered
        path = f"held.{secrets.token_hex(3)}"
        release = held_until(waiting.upstream, path)
        try:
            queued = pt.invoke_function(SLACK, {"method": "GET", "url": path}, wait=0)
            assert (queued.status, queued.done, queued.app) == ("queued", False, "slack")
        finally:
            release.set()
        assert pt.wait_for(queued.id, timeout=WAIT_S).network_code == "200"
