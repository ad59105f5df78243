"""Retries through the real worker: transient answers are tried again, Retry-After is kept."""

from __future__ import annotations

from tests.e2e.conftest import Caller, Stack
from tests.e2e.upstream import Reply


def test_503_503_200_completes_with_three_attempts(stack: Stack, caller: Caller) -> None:
    # Given an upstream method that fails twice with 503, then answers
    stack.upstream.script(
        "GET",
        "/api/flaky.method",
        Reply(503, {"ok": False}),
        Reply(503, {"ok": False}),
        Reply(200, {"ok": True}),
    )
    caller.connect("slack", "u-retry", {"access_token": "xoxb-retry"})

    # When it is called
    r = caller.http.post(
        "/slack-passthrough-request",
        headers={"X-User-ID": "u-retry"},
        json={"method": "GET", "url": "https://slack.com/api/flaky.method"},
    )
    call = caller.wait(r.json()["id"])

    # Then it completed on the third attempt, and every attempt is on record
    assert call["status"] == "completed"
    assert call["network_code"] == "200"
    assert call["output"] == {"ok": True}
    assert [(a["number"], a["network_code"]) for a in call["attempts"]] == [
        (1, "503"),
        (2, "503"),
        (3, "200"),
    ]
    assert call["attempts"][0]["decision"].startswith("retry in ")
    assert len(stack.upstream.requests_to("/api/flaky.method")) == 3


def test_429_retry_after_is_waited_for(stack: Stack, caller: Caller) -> None:
    # Given an upstream that asks for 2 s of patience once
    stack.upstream.script(
        "POST",
        "/api/chat.postMessage",
        Reply(429, {"ok": False}, headers={"Retry-After": "2"}),
        Reply(200, {"ok": True}),
    )
    caller.connect("slack", "u-429", {"access_token": "xoxb-429"})

    # When a POST is sent (a 429 says it was not acted on, so it may be sent again)
    r = caller.http.post(
        "/slack-passthrough-request",
        headers={"X-User-ID": "u-429"},
        json={"method": "POST", "url": "chat.postMessage", "body": {"t": 1}},
    )
    call = caller.wait(r.json()["id"])

    # Then the second attempt came at least 2 s after the first
    assert call["status"] == "completed"
    seen = stack.upstream.requests_to("/api/chat.postMessage")[-2:]
    assert seen[1].at - seen[0].at >= 2.0
    assert [a["network_code"] for a in call["attempts"]] == ["429", "200"]
