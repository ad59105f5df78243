"""Tenants see only their own things; secrets are never stored, logged or answered in clear."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import text

from models.accounts.tenants import create_tenant
from tests.e2e.conftest import Caller, Stack, new_caller
from tests.e2e.test_errors import assert_error

# `once` (SQLite pass only): isolation is each query's tenant filter and each ciphertext's row
# binding, the same on either database; tests/api and tests/worker/test_pipeline.py run those
# queries on Postgres.
pytestmark = pytest.mark.once

SLACK_CALL = {"method": "GET", "url": "https://slack.com/api/conversations.list"}


def test_another_tenants_calls_and_accounts_are_404(stack: Stack, caller: Caller) -> None:
    # Given tenant A with an account and a finished call
    account = caller.connect("slack", "u-a", {"access_token": "xoxb-tenant-a"})
    r = caller.http.post(
        "/slack-passthrough-request", json=SLACK_CALL, headers={"X-User-ID": "u-a"}
    )
    call_id = r.json()["id"]
    caller.wait(call_id)

    # When tenant B asks for them
    _, key_b = create_tenant(stack.engine, "tenant-b")
    with stack.client(key_b) as b:
        # Then B sees none of A's things
        assert_error(b.get(f"/function-calls/{call_id}"), 404, "not_found")
        assert_error(b.post(f"/function-calls/{call_id}/cancel"), 404, "not_found")
        assert_error(b.delete(f"/connected-accounts/{account['id']}"), 404, "not_found")
        assert b.get("/function-calls").json()["items"] == []
        assert b.get("/connected-accounts").json()["items"] == []
        # nor can B use A's account for its own calls
        r = b.post(
            "/slack-passthrough-request",
            headers={"X-User-ID": "u-a"},
            json={**SLACK_CALL, "connected_account_id": account["id"]},
        )
        assert_error(r, 400, "no_connected_account", "connected_account_id")
    # while A still sees its call
    assert caller.http.get(f"/function-calls/{call_id}").status_code == 200


def test_most_recent_account_is_used_unless_one_is_named(stack: Stack, caller: Caller) -> None:
    # Given a user with two Slack accounts
    older = caller.connect("slack", "u-two", {"access_token": "xoxb-older"})
    newer = caller.connect("slack", "u-two", {"access_token": "xoxb-newer"})

    # When calls are made without and with connected_account_id
    implicit = caller.http.post(
        "/slack-passthrough-request",
        json=SLACK_CALL,
        headers={"X-User-ID": "u-two", "Prefer": "wait=30"},
    ).json()
    named = caller.http.post(
        "/slack-passthrough-request",
        json={**SLACK_CALL, "connected_account_id": older["id"]},
        headers={"X-User-ID": "u-two", "Prefer": "wait=30"},
    ).json()

    # Then the first used the newer account, the second the named one
    assert (
        caller.http.get(f"/function-calls/{implicit['id']}").json()["connected_account_id"]
        == newer["id"]
    )
    assert (
        caller.http.get(f"/function-calls/{named['id']}").json()["connected_account_id"]
        == older["id"]
    )
    tokens = [
        s.headers["authorization"]
        for s in stack.upstream.requests_to("/api/conversations.list")[-2:]
    ]
    assert tokens == ["Bearer xoxb-newer", "Bearer xoxb-older"]


def _database_text(stack: Stack) -> str:
    chunks: list[str] = []
    with stack.engine.connect() as conn:
        for table in ("tenant", "connected_account", "function_call", "call_attempt"):
            for row in conn.execute(text(f"SELECT * FROM {table}")):
                chunks.append(" ".join(str(v) for v in row))
    return "\n".join(chunks)


def test_no_secret_in_database_answers_or_logs(stack: Stack, caller: Caller) -> None:
    # Given a unique token, stored and used for a call that sends a header of the caller's
    token = f"xoxb-secret-{secrets.token_hex(8)}"
    created = caller.connect(
        "slack", "u-secret", {"access_token": token, "refresh_token": token + "-refresh"}
    )
    r = caller.http.post(
        "/slack-passthrough-request",
        json={**SLACK_CALL, "headers": {"X-Trace": "t-1"}},
        headers={"X-User-ID": "u-secret", "Prefer": "wait=30"},
    )
    assert r.status_code == 200, r.text
    call = caller.http.get(f"/function-calls/{r.json()['id']}").json()

    # Then the upstream got it...
    assert (
        stack.upstream.requests_to("/api/conversations.list")[-1].headers["authorization"]
        == f"Bearer {token}"
    )
    # ...but no answer, no row and no log line holds it, nor the tenant's API key
    listed = caller.http.get("/connected-accounts").text
    for blob in (str(created), listed, str(call), r.text):
        assert token not in blob
    stored = _database_text(stack)
    assert token not in stored
    assert caller.api_key not in stored
    assert token not in stack.all_logs()
    assert caller.api_key not in stack.all_logs()
    # and the caller's own header was kept while nothing named Authorization was
    assert call["app"] == "slack"
    with stack.engine.connect() as conn:
        headers = conn.execute(
            text("SELECT request_headers FROM function_call WHERE id = :id"),
            {"id": call["id"]},
        ).scalar_one()
    assert "t-1" in str(headers)
    assert "authorization" not in str(headers).lower()


def test_credentials_swapped_between_tenants_accounts_are_refused(
    stack: Stack, caller: Caller
) -> None:
    # Given tenant A's and tenant B's Slack accounts, whose stored credentials are then
    # swapped in the database
    a_token, b_token = (f"xoxb-swap-{secrets.token_hex(8)}" for _ in range(2))
    a_account = caller.connect("slack", "u-swap-a", {"access_token": a_token})
    with new_caller(stack, "tenant-b") as b:
        b_account = b.connect("slack", "u-swap-b", {"access_token": b_token})
        with stack.engine.begin() as conn:
            stored = dict(
                conn.execute(
                    text("SELECT id, credentials_enc FROM connected_account WHERE id IN (:a, :b)"),
                    {"a": a_account["id"], "b": b_account["id"]},
                ).all()
            )
            for mine, theirs in ((a_account, b_account), (b_account, a_account)):
                conn.execute(
                    text("UPDATE connected_account SET credentials_enc = :enc WHERE id = :id"),
                    {"enc": stored[theirs["id"]], "id": mine["id"]},
                )

        # When each tenant calls Slack with its account
        calls = []
        for who, user in ((caller, "u-swap-a"), (b, "u-swap-b")):
            r = who.http.post(
                "/slack-passthrough-request", json=SLACK_CALL, headers={"X-User-ID": user}
            )
            assert r.status_code == 202, r.text
            calls.append((who, r.json()["id"]))

        # Then both calls fail with credentials_invalid, saying why without naming the other
        # tenant's account
        for (who, call_id), other in zip(calls, (b_account, a_account), strict=True):
            call = who.wait(call_id)
            assert (call["status"], call["error"]) == ("failed", "credentials_invalid"), call
            assert "another row" in call["error_message"]
            assert other["id"] not in str(call)
    # and neither token reached the upstream
    sent = str([s.headers for s in list(stack.upstream.seen)])
    assert a_token not in sent
    assert b_token not in sent
