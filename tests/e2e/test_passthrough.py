"""The two Integry examples, wait mode and upstream errors, through the whole system.

The two examples also run on Postgres, as the whole path's smoke test there (intake, the claim's
UPDATE ... RETURNING, the result stored and read back, `Prefer: wait`); the other tests are
`once`, each saying why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Caller, Stack, wait_until
from tests.e2e.upstream import SLACK_CONVERSATIONS, Reply

SLACK_TOKEN = "xoxb-e2e-slack-token-4f9a"
PIPEDRIVE_TOKEN = "pd-e2e-oauth-token-77c1"


def test_slack_example_completes_through_a_real_worker(stack: Stack, caller: Caller) -> None:
    # Given a user with a connected Slack account
    caller.connect("slack", "u-slack", {"access_token": SLACK_TOKEN})
    before = len(stack.upstream.requests_to("/api/conversations.list"))

    # When the Integry example is submitted
    r = caller.http.post(
        "/slack-passthrough-request",
        headers={"X-User-ID": "u-slack"},
        json={"method": "GET", "url": "https://slack.com/api/conversations.list?limit=2"},
    )

    # Then it is accepted at once, and ends with the upstream's answer
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status"] == "queued"
    assert accepted["function"] == "slack-passthrough-request"
    assert accepted["app"] == "slack"
    call = caller.wait(accepted["id"])
    assert call["status"] == "completed"
    assert call["network_code"] == "200"
    assert call["output"] == SLACK_CONVERSATIONS
    assert call["headers"]["content-type"] == "application/json"
    assert [a["number"] for a in call["attempts"]] == [1]
    assert call["attempts"][0]["network_code"] == "200"
    # and the upstream saw the user's token and the caller's query
    seen = stack.upstream.requests_to("/api/conversations.list")[before:]
    assert len(seen) == 1
    assert seen[0].headers["authorization"] == f"Bearer {SLACK_TOKEN}"
    assert seen[0].query == {"limit": ["2"]}


def test_pipedrive_example_with_prefer_wait_answers_200(stack: Stack, caller: Caller) -> None:
    # Given a user with a connected Pipedrive account
    caller.connect("pipedrive", "u-pd", {"access_token": PIPEDRIVE_TOKEN})

    # When a person is created with Prefer: wait
    r = caller.http.post(
        "/pipedrive-passthrough-request",
        headers={"X-User-ID": "u-pd", "Prefer": "wait=30"},
        json={
            "method": "POST",
            "url": "https://api.pipedrive.com/api/v2/persons",
            "body": {"name": "Ada Lovelace", "emails": [{"value": "ada@example.com"}]},
        },
    )

    # Then the answer is the Integry shape plus id, in the same response
    assert r.status_code == 200, r.text
    assert r.headers["preference-applied"] == "wait=30"
    result = r.json()
    assert set(result) >= {"id", "status", "network_code", "output", "headers"}
    assert result["status"] == "completed"
    assert result["network_code"] == "200"
    assert result["output"]["data"]["name"] == "Ada Lovelace"
    sent = stack.upstream.requests_to("/api/v2/persons")[-1]
    assert sent.json() == {"name": "Ada Lovelace", "emails": [{"value": "ada@example.com"}]}
    assert sent.headers["authorization"] == f"Bearer {PIPEDRIVE_TOKEN}"
    assert sent.headers["content-type"] == "application/json"


# `once`: the SDK form and URL joining are validation, before anything is stored.
@pytest.mark.once
def test_sdk_form_and_relative_url(stack: Stack, caller: Caller) -> None:
    # Given a Slack account
    account = caller.connect("slack", "u-sdk", {"access_token": SLACK_TOKEN})

    # When the SDK form names the account and gives a path relative to the base URL
    r = caller.http.post(
        "/function-calls",
        headers={"Prefer": "wait=30"},
        json={
            "function": "slack-passthrough-request",
            "params": {"method": "GET", "url": "conversations.list"},
            "connected_account_id": account["id"],
        },
    )

    # Then it completes against https://slack.com/api/conversations.list
    assert r.status_code == 200, r.text
    assert r.json()["output"] == SLACK_CONVERSATIONS


# `once`: URL normalisation, done before anything is stored.
@pytest.mark.once
@pytest.mark.parametrize(
    "url",
    [
        "conversations.list?limit=2",
        "/conversations.list?limit=2",
        "/api/conversations.list?limit=2",  # the path as Slack documents it: not doubled
        "https://slack.com/api/conversations.list?limit=2",
    ],
)
def test_every_form_of_a_url_reaches_the_same_endpoint(
    stack: Stack, caller: Caller, url: str
) -> None:
    # Given a Slack account (base URL https://slack.com/api)
    caller.connect("slack", "u-urls", {"access_token": SLACK_TOKEN})
    before = len(stack.upstream.requests_to("/api/conversations.list"))
    # When the call names the endpoint this way
    r = caller.http.post(
        "/slack-passthrough-request",
        headers={"X-User-ID": "u-urls", "Prefer": "wait=30"},
        json={"method": "GET", "url": url},
    )
    # Then it is stored as the absolute URL and reaches /api/conversations.list once
    assert r.status_code == 200, r.text
    assert r.json()["output"] == SLACK_CONVERSATIONS
    call = caller.wait(r.json()["id"])
    assert call["url"] == "https://slack.com/api/conversations.list?limit=2"
    assert len(stack.upstream.requests_to("/api/conversations.list")) == before + 1
    assert stack.upstream.requests_to("/api/api/conversations.list") == []


# `once`: a validation refusal; nothing is stored.
@pytest.mark.once
def test_a_url_without_a_scheme_is_refused_with_the_https_form(caller: Caller) -> None:
    caller.connect("slack", "u-noscheme", {"access_token": SLACK_TOKEN})
    r = caller.http.post(
        "/slack-passthrough-request",
        headers={"X-User-ID": "u-noscheme"},
        json={"method": "GET", "url": "slack.com/api/conversations.list"},
    )
    assert r.status_code == 400, r.text
    detail = r.json()["error_details"][0]
    assert detail["field"] == "url"
    assert "https://slack.com/api/conversations.list" in detail["message"]
    # and nothing was logged as a call
    logged = caller.http.get("/function-calls", params={"user_id": "u-noscheme"}).json()
    assert logged["items"] == []


# `once`: how the worker reads the upstream's answer.
@pytest.mark.once
def test_upstream_404_is_a_completed_call(stack: Stack, caller: Caller) -> None:
    # Given an upstream that answers 404 for this method
    caller.connect("slack", "u-404", {"access_token": SLACK_TOKEN})

    # When the call is made
    r = caller.http.post(
        "/slack-passthrough-request",
        headers={"X-User-ID": "u-404", "Prefer": "wait=30"},
        json={"method": "GET", "url": "https://slack.com/api/no.such.method"},
    )

    # Then passthru reports the upstream's answer, not a failure of its own
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed"
    assert r.json()["network_code"] == "404"
    assert r.json()["output"] == {"error": "not_found", "path": "/api/no.such.method"}


# `once`: how the worker reads the upstream's answer.
@pytest.mark.once
def test_upstream_text_and_5xx_are_recorded(stack: Stack, caller: Caller) -> None:
    # Given an upstream method that answers 500 with a text body
    stack.upstream.script(
        "GET",
        "/api/chat.broken",
        Reply(
            500,
            b"upstream exploded",
            headers={"Content-Type": "text/plain", "Set-Cookie": "session=abc"},
        ),
    )
    caller.connect("slack", "u-500", {"access_token": SLACK_TOKEN})

    # When it is called
    r = caller.http.post(
        "/slack-passthrough-request",
        headers={"X-User-ID": "u-500"},
        json={"method": "GET", "url": "https://slack.com/api/chat.broken"},
    )
    call = caller.wait(r.json()["id"])

    # Then the text is the output and cookies are not kept
    assert call["status"] == "completed"
    assert call["network_code"] == "500"
    assert call["output"] == "upstream exploded"
    assert "set-cookie" not in call["headers"]


# `once`: the API's wait deadline; the example above waits on Postgres.
@pytest.mark.once
def test_wait_times_out_with_202(stack: Stack, caller: Caller) -> None:
    # Given an upstream that takes 2 s
    stack.upstream.script("GET", "/api/slow.method", Reply(200, {"ok": True}, delay_s=2))
    caller.connect("slack", "u-slow", {"access_token": SLACK_TOKEN})

    # When the caller waits only a fraction of that
    r = caller.http.post(
        "/slack-passthrough-request",
        headers={"X-User-ID": "u-slow", "Prefer": "wait=0.2"},
        json={"method": "GET", "url": "https://slack.com/api/slow.method"},
    )

    # Then the answer is 202 with the call to poll, and it completes later
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("queued", "running")
    assert caller.wait(r.json()["id"])["network_code"] == "200"


# `once`: the heartbeat is a file.
@pytest.mark.once
def test_a_running_worker_keeps_its_heartbeat_fresh(stack: Stack) -> None:
    # The liveness probe of a worker container: `passthru worker-alive`
    heartbeat = Path(stack.env["PASSTHRU_HEARTBEAT_FILE"])
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "worker-alive", "--max-age", "30"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert heartbeat.exists()
    assert done.returncode == 0, done.stderr


# `once`: log lines.
@pytest.mark.once
def test_the_worker_logs_one_json_line_per_finished_call(stack: Stack, caller: Caller) -> None:
    caller.connect("slack", "u-logs", {"access_token": "xoxb-logs-secret"})
    r = caller.http.post(
        "/slack-passthrough-request",
        headers={"X-User-ID": "u-logs"},
        json={"method": "GET", "url": "conversations.list"},
    )
    call_id = r.json()["id"]
    caller.wait(call_id)

    def finished_lines() -> list[dict[str, Any]]:
        lines = []
        for line in (stack.logs / "worker.log").read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return [
            e for e in lines if e.get("call_id") == call_id and e.get("event") == "call.finished"
        ]

    # The line follows the waiters' notice (a waiting caller is answered first)
    wait_until(lambda: bool(finished_lines()), 10, "the call's log line")
    [finished] = finished_lines()
    assert finished["status"] == "completed"
    assert finished["network_code"] == "200"
    assert finished["app"] == "slack"
    assert finished["tenant_id"] == caller.tenant_id
    assert "xoxb-logs-secret" not in (stack.logs / "worker.log").read_text()
