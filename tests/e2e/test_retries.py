"""Retries through the real worker: transient answers are tried again, Retry-After is kept."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Caller, Stack
from tests.e2e.upstream import Reply

# `once` (SQLite pass only): retry decisions are the worker's; the `retrying` rows they write
# are tested on Postgres in tests/worker/test_pipeline.py and tests/worker/test_sweeper.py.
pytestmark = pytest.mark.once


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


def test_post_dropped_after_sending_is_outcome_unknown_and_sent_once(
    stack: Stack, caller: Caller
) -> None:
    # Given an endpoint that reads the request, then drops the connection
    stack.upstream.script("POST", "/api/v2/deals", Reply(drop=True))
    caller.connect("pipedrive", "u-drop", {"access_token": "pd-drop"})
    before = len(stack.upstream.requests_to("/api/v2/deals"))

    # When a POST is made without an Idempotency-Key
    r = caller.http.post(
        "/pipedrive-passthrough-request",
        headers={"X-User-ID": "u-drop"},
        json={"method": "POST", "url": "/api/v2/deals", "body": {"n": 1}},
    )
    call = caller.wait(r.json()["id"])

    # Then it is not re-sent: the upstream may have acted on it
    assert call["status"] == "failed"
    assert call["error"] == "outcome_unknown"
    assert len(stack.upstream.requests_to("/api/v2/deals")) - before == 1


def test_post_with_idempotency_key_is_retried_after_a_drop(stack: Stack, caller: Caller) -> None:
    # Given an endpoint that drops the first request, then answers
    stack.upstream.script("POST", "/api/v2/notes", Reply(drop=True), Reply(200, {"ok": 1}))
    caller.connect("pipedrive", "u-key", {"access_token": "pd-key"})

    # When the caller made the POST safe to repeat
    r = caller.http.post(
        "/pipedrive-passthrough-request",
        headers={"X-User-ID": "u-key", "Idempotency-Key": "note-42"},
        json={"method": "POST", "url": "/api/v2/notes", "body": {"content": "hi"}},
    )
    call = caller.wait(r.json()["id"])

    # Then it was sent again and completed
    assert call["status"] == "completed"
    assert [a["error"] for a in call["attempts"]] == ["network_error", None]
    assert len(stack.upstream.requests_to("/api/v2/notes")) == 2


def test_a_calls_own_retry_and_timeout_params_are_obeyed(stack: Stack, caller: Caller) -> None:
    # Given an upstream method that fails with 503 twice before answering, and one that
    # takes 3 s to answer
    stack.upstream.script(
        "GET",
        "/api/twice.flaky",
        Reply(503, {"ok": False}),
        Reply(503, {"ok": False}),
        Reply(200, {"ok": True}),
    )
    stack.upstream.script("GET", "/api/slow.method", Reply(200, {"ok": True}, delay_s=3))
    caller.connect("slack", "u-params", {"access_token": "xoxb-params"})
    headers = {"X-User-ID": "u-params"}

    # When one call allows only 2 attempts, and another 1 attempt of at most 0.5 s
    few = caller.http.post(
        "/slack-passthrough-request",
        headers=headers,
        json={"method": "GET", "url": "twice.flaky", "retry": {"max_attempts": 2}},
    )
    quick = caller.http.post(
        "/slack-passthrough-request",
        headers=headers,
        json={
            "method": "GET",
            "url": "slow.method",
            "retry": {"max_attempts": 1},
            "timeout": {"total_s": 0.5},
        },
    )

    # Then the first stops after its second 503, which stands as the answer
    call = caller.wait(few.json()["id"])
    assert call["status"] == "completed"
    assert call["network_code"] == "503"
    assert [a["network_code"] for a in call["attempts"]] == ["503", "503"]
    assert len(stack.upstream.requests_to("/api/twice.flaky")) == 2
    # And the second fails at its own deadline, with no second attempt
    call = caller.wait(quick.json()["id"])
    assert call["status"] == "failed"
    assert call["error"] == "timeout"
    assert [a["error"] for a in call["attempts"]] == ["timeout"]
