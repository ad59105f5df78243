"""Credentials through the real worker: OAuth2 refresh under concurrency, revoked refresh
tokens, and each auth style on the wire."""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

import pytest
from sqlalchemy import text

from tests.e2e.conftest import OAUTH_CLIENT, Caller, Stack
from tests.e2e.upstream import Reply

# `once` (SQLite pass only): refreshes are single-flight through a Redis lock and auth styles
# are on the wire; storing tokens and `needs_reauth` run on Postgres in tests/worker/test_oauth.py.
pytestmark = pytest.mark.once

EXPIRED = int(time.time()) - 3600


def _call(caller: Caller, app: str, user: str, url: str) -> str:
    r = caller.http.post(
        f"/{app}-passthrough-request",
        json={"method": "GET", "url": url},
        headers={"X-User-ID": user},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def test_twenty_concurrent_calls_with_an_expired_token_refresh_it_once(
    stack: Stack, caller: Caller
) -> None:
    # Given an account whose access token expired, and a token endpoint that is slow to
    # answer (so that every call meets the expired token while the refresh is under way)
    stack.upstream.script(
        "POST",
        "/oauthy/token",
        Reply(
            200,
            {"access_token": "fresh-token", "refresh_token": "r-2", "expires_in": 3600},
            delay_s=0.5,
        ),
    )
    stack.upstream.script("GET", "/oauthy/items", Reply(200, {"ok": True}))
    account = caller.connect(
        "oauthy",
        "u-oauth",
        {"access_token": "stale-token", "refresh_token": "r-1", "expires_at": EXPIRED},
    )
    before = len(stack.upstream.requests_to("/oauthy/token"))

    # When 20 calls are made at once
    with ThreadPoolExecutor(10) as pool:
        ids = list(pool.map(lambda _: _call(caller, "oauthy", "u-oauth", "items"), range(20)))
    calls = [caller.wait(call_id) for call_id in ids]

    # Then the token endpoint was asked exactly once, with the refresh token and the
    # operator's client, and all 20 requests carried the new token
    assert [c["status"] for c in calls] == ["completed"] * 20
    refreshes = stack.upstream.requests_to("/oauthy/token")[before:]
    assert len(refreshes) == 1
    form = {k: v[0] for k, v in parse_qs(refreshes[0].body.decode()).items()}
    assert form == {"grant_type": "refresh_token", "refresh_token": "r-1", **OAUTH_CLIENT}
    sent = [s for s in stack.upstream.requests_to("/oauthy/items") if s.query.get("u") is None]
    auths = {s.headers["authorization"] for s in sent[-20:]}
    assert auths == {"Bearer fresh-token"}
    # And the new tokens are stored, encrypted
    with stack.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT credentials_enc FROM connected_account WHERE id = :id"),
            {"id": account["id"]},
        ).scalar_one()
    assert "fresh-token" not in stored
    assert "r-2" not in stored


def test_a_revoked_refresh_token_needs_reauth(stack: Stack, caller: Caller) -> None:
    # Given an expired token whose refresh token the user revoked (the token endpoint
    # takes a second to say so)
    stack.upstream.script(
        "POST",
        "/oauthy/token",
        Reply(
            400,
            {"error": "invalid_grant", "error_description": "Token has been revoked."},
            delay_s=1.0,
        ),
    )
    before = len(stack.upstream.requests_to("/oauthy/token"))
    account = caller.connect(
        "oauthy",
        "u-revoked",
        {"access_token": "old", "refresh_token": "revoked", "expires_at": EXPIRED},
    )

    # When calls are made meanwhile
    ids = [_call(caller, "oauthy", "u-revoked", "items") for _ in range(3)]
    calls = [caller.wait(call_id) for call_id in ids]

    # Then they fail with credentials_revoked after one question to the token endpoint,
    # the account needs its user again, and a new call is refused at once
    assert {(c["status"], c["error"]) for c in calls} == {("failed", "credentials_revoked")}
    assert len(stack.upstream.requests_to("/oauthy/token")) - before == 1
    listed = caller.http.get("/connected-accounts", params={"user_id": "u-revoked"}).json()
    [entry] = [a for a in listed["items"] if a["id"] == account["id"]]
    assert entry["status"] == "needs_reauth"
    refused = caller.http.post(
        "/oauthy-passthrough-request",
        json={"method": "GET", "url": "items", "connected_account_id": account["id"]},
        headers={"X-User-ID": "u-revoked"},
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "account_needs_reauth"

    # When the user connects again
    stack.upstream.script("GET", "/oauthy/items", Reply(200, {"ok": True}))
    patched = caller.http.patch(
        f"/connected-accounts/{account['id']}",
        json={"credentials": {"access_token": "brand-new"}},
    )
    assert patched.status_code == 200, patched.text
    # Then calls run again
    again = caller.wait(_call(caller, "oauthy", "u-revoked", "items"))
    assert again["status"] == "completed"


def test_each_auth_style_reaches_the_upstream_as_the_app_says(stack: Stack, caller: Caller) -> None:
    # Given a Zendesk account (its own subdomain, bearer), a Hunter account (API key as a
    # query parameter) and a Freshdesk account (basic auth, API key as the user)
    for path in ("/api/v2/tickets.json", "/v2/account", "/api/v2/contacts"):
        stack.upstream.script("GET", path, Reply(200, {"ok": True}))
    caller.connect("zendesk", "u-styles", {"access_token": "zd-token"}, {"subdomain": "acme"})
    caller.connect("hunter", "u-styles", {"api_key": "hunter-key"})
    caller.connect("freshdesk", "u-styles", {"api_key": "fd-key"}, {"domain": "acme"})

    # When each is called
    zd = caller.wait(_call(caller, "zendesk", "u-styles", "tickets.json"))
    hu = caller.wait(_call(caller, "hunter", "u-styles", "account?x=1"))
    fd = caller.wait(_call(caller, "freshdesk", "u-styles", "contacts"))

    # Then each went to its host with the credentials where the app wants them
    assert [c["status"] for c in (zd, hu, fd)] == ["completed"] * 3
    assert zd["url"] == "https://acme.zendesk.com/api/v2/tickets.json"
    [zs] = stack.upstream.requests_to("/api/v2/tickets.json")[-1:]
    assert zs.headers["authorization"] == "Bearer zd-token"
    [hs] = stack.upstream.requests_to("/v2/account")[-1:]
    assert hs.query == {"x": ["1"], "api_key": ["hunter-key"]}
    assert "authorization" not in hs.headers
    assert "hunter-key" not in hu["url"]
    [fs] = stack.upstream.requests_to("/api/v2/contacts")[-1:]
    assert fs.headers["authorization"] == "Basic " + base64.b64encode(b"fd-key:X").decode()


def test_a_template_value_cannot_smuggle_another_host(caller: Caller) -> None:
    for value in ("evil.com/", "a@evil.com", "acme.evil.com", "acme:443"):
        r = caller.http.post(
            "/connected-accounts",
            json={
                "app": "zendesk",
                "credentials": {"access_token": "t"},
                "connection_config": {"subdomain": value},
            },
            headers={"X-User-ID": "u-evil"},
        )
        assert r.status_code == 400, (value, r.text)
        assert r.json()["error_details"][0]["field"].startswith("connection_config")
