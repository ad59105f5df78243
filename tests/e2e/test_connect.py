"""Hosted connect pages in Chromium, end to end: the real API, worker and Redis, the tests'
stand-in upstream, and a stand-in authorization server on 127.0.0.1 that checks the client
id, the redirect URI and the PKCE verifier. An end user connects through the pages, and
the account then carries calls through the worker."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine, update
from sqlmodel import col

from api.dev.embedded_redis import free_port
from models.accounts.states import AccountStatus
from models.db.engine import session_scope, utcnow
from models.db.tables import ConnectedAccount, ConnectSession
from tests.e2e.authorization import AuthorizationServer
from tests.e2e.conftest import Caller, OwnStack, Stack, new_caller
from tests.e2e.upstream import Reply, Upstream

pytestmark = pytest.mark.browser

CLIENT = {"client_id": "pt-e2e-connect", "client_secret": "pt-e2e-connect-secret"}
CONNECTY = {
    "name": "Connecty",
    "base_url": "https://connecty.test/connecty",
    "allowed_hosts": ["connecty.test"],
    "auth": {"type": "bearer"},
    "oauth2": {
        "authorize_url": "https://auth.connecty.test/authorize",
        "token_url": "https://auth.connecty.test/token",
        "scopes": ["read", "write"],
        "pkce": True,
        "token_auth": "basic",
        **CLIENT,
    },
}


@pytest.fixture(scope="module")
def authz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthorizationServer]:
    api_port = free_port()
    server = AuthorizationServer(
        CLIENT["client_id"],
        CLIENT["client_secret"],
        redirect_uri=f"http://127.0.0.1:{api_port}/oauth/callback",
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def connect_stack(
    own_stack: OwnStack, upstream: Upstream, authz: AuthorizationServer
) -> Iterator[Stack]:
    api_port = int(urlsplit(authz.redirect_uri).port or 0)
    with own_stack(
        "connect-logs",
        extra_env={"PASSTHRU_PUBLIC_URL": f"http://127.0.0.1:{api_port}"},
        overrides={
            "https://connecty.test": upstream.origin,
            "https://auth.connecty.test": authz.origin,
        },
        apps={"connecty": CONNECTY},
        api_port=api_port,
    ) as stack:
        yield stack


@pytest.fixture
def caller(connect_stack: Stack) -> Iterator[Caller]:
    with new_caller(connect_stack, "connect") as made:
        yield made


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


def _link(caller: Caller, authz: AuthorizationServer, app: str, **body: object) -> str:
    response = caller.http.post(
        "/connect-sessions",
        json={"app": app, "redirect_url": f"{authz.origin}/tenant/back", **body},
        headers={"X-User-ID": "u-browser"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["url"])


def _back_query(page: Page, authz: AuthorizationServer) -> dict[str, str]:
    page.wait_for_url(f"{authz.origin}/tenant/back*")
    expect(page.get_by_role("heading")).to_have_text("Back at the tenant")
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def _allow(page: Page, url: str, authz: AuthorizationServer, choice: str = "Allow") -> None:
    page.goto(url)
    expect(page.get_by_role("heading", name="Connect Connecty")).to_be_visible()
    page.get_by_role("button", name="Connect").click()
    page.wait_for_url(f"{authz.origin}/authorize*")
    expect(page.get_by_role("heading")).to_have_text("Allow passthru?")
    page.get_by_role("link", name=choice).click()


def _call(caller: Caller, upstream: Upstream, account_id: str) -> str:
    """A call through the worker to the stand-in upstream; the bearer token it carried."""
    path = f"/connecty/me-{secrets.token_hex(4)}"
    upstream.script("GET", path, Reply(200, {"ok": True}))
    accepted = caller.http.post(
        "/connecty-passthrough-request",
        headers={"X-User-ID": "u-browser", "Prefer": "wait=20"},
        json={"method": "GET", "url": path, "connected_account_id": account_id},
    )
    assert accepted.status_code in (200, 202), accepted.text
    call = caller.wait(accepted.json()["id"])
    assert call["network_code"] == "200", call
    return upstream.requests_to(path)[-1].headers["authorization"]


def test_an_end_user_connects_with_oauth2_and_pkce_then_a_call_carries_the_new_token(
    page: Page,
    caller: Caller,
    authz: AuthorizationServer,
    upstream: Upstream,
    connect_stack: Stack,
) -> None:
    # Given a link for Connecty, when the end user connects and allows access
    _allow(page, _link(caller, authz, "connecty"), authz)
    # Then the browser is back at the tenant with the account, and the stand-in refused nothing
    query = _back_query(page, authz)
    assert query["app"] == "connecty"
    assert authz.refusals == []
    token = authz.issued[-1]
    assert token not in page.content()
    # and a call through the worker carries the token the code was exchanged for
    assert _call(caller, upstream, query["connected_account_id"]) == f"Bearer {token}"
    listed = caller.http.get("/connected-accounts", params={"app": "connecty"}).json()
    assert [(a["source"], a["status"]) for a in listed["items"]] == [("connect_page", "active")]
    # and no log of the API or the worker holds the token or the client's secret
    logs = connect_stack.all_logs()
    assert token not in logs
    assert f"r-{token}" not in logs
    assert CLIENT["client_secret"] not in logs


def test_an_end_user_connects_with_an_api_key(
    page: Page, caller: Caller, authz: AuthorizationServer, upstream: Upstream
) -> None:
    page.goto(_link(caller, authz, "hunter"))
    expect(page.get_by_role("heading", name="Connect Hunter")).to_be_visible()
    page.get_by_label("API key").fill("hunter-e2e-key-42")
    page.get_by_role("button", name="Connect").click()
    query = _back_query(page, authz)
    assert query["app"] == "hunter"
    upstream.script("GET", "/v2/account", Reply(200, {"data": {}}))
    accepted = caller.http.post(
        "/hunter-passthrough-request",
        headers={"X-User-ID": "u-browser", "Prefer": "wait=20"},
        json={"method": "GET", "url": "https://api.hunter.io/v2/account"},
    )
    assert caller.wait(accepted.json()["id"])["network_code"] == "200"
    assert upstream.requests_to("/v2/account")[-1].query["api_key"] == ["hunter-e2e-key-42"]


def test_a_denial_goes_back_to_the_tenant_with_the_error(
    page: Page, caller: Caller, authz: AuthorizationServer
) -> None:
    _allow(page, _link(caller, authz, "connecty"), authz, choice="Deny")
    query = _back_query(page, authz)
    assert (query["error"], query["error_description"]) == (
        "access_denied",
        "the user denied access",
    )
    assert "connected_account_id" not in query
    assert caller.http.get("/connected-accounts").json()["items"] == []


def test_a_tampered_state_is_refused_on_a_clear_page(
    page: Page, caller: Caller, connect_stack: Stack, authz: AuthorizationServer
) -> None:
    page.goto(_link(caller, authz, "connecty"))
    page.get_by_role("button", name="Connect").click()
    page.wait_for_url(f"{authz.origin}/authorize*")
    allow = page.get_by_role("link", name="Allow").get_attribute("href") or ""
    code = parse_qs(urlsplit(allow).query)["code"][0]
    response = page.goto(f"{connect_stack.base_url}/oauth/callback?code={code}&state=tampered")
    assert response is not None
    assert response.status == 400
    expect(page.get_by_role("heading")).to_have_text("Unknown sign-in")
    assert caller.http.get("/connected-accounts").json()["items"] == []


def test_a_used_link_cannot_be_replayed(
    page: Page, caller: Caller, authz: AuthorizationServer
) -> None:
    url = _link(caller, authz, "connecty")
    _allow(page, url, authz)
    _back_query(page, authz)
    response = page.goto(url)
    assert response is not None
    assert response.status == 400
    expect(page.get_by_role("heading")).to_have_text("Link already used")
    assert len(caller.http.get("/connected-accounts").json()["items"]) == 1


def test_an_expired_link_is_refused(
    page: Page, caller: Caller, authz: AuthorizationServer, engine: Engine
) -> None:
    url = _link(caller, authz, "connecty")
    with session_scope(engine) as db:
        db.exec(
            update(ConnectSession)
            .where(col(ConnectSession.tenant_id) == caller.tenant_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    response = page.goto(url)
    assert response is not None
    assert response.status == 400
    expect(page.get_by_role("heading")).to_have_text("Link expired")


def test_a_reconnect_clears_needs_reauth_and_the_next_call_carries_the_new_token(
    page: Page, caller: Caller, authz: AuthorizationServer, upstream: Upstream, engine: Engine
) -> None:
    # Given an account whose refresh token was revoked
    account = caller.connect("connecty", "u-browser", {"access_token": "revoked-token"})
    with session_scope(engine) as db:
        db.exec(
            update(ConnectedAccount)
            .where(col(ConnectedAccount.id) == account["id"])
            .values(status=AccountStatus.NEEDS_REAUTH)
        )
    refused = caller.http.post(
        "/connecty-passthrough-request",
        headers={"X-User-ID": "u-browser"},
        json={"method": "GET", "url": "/me", "connected_account_id": account["id"]},
    )
    assert refused.status_code == 400
    # When its user goes through a reconnect link
    _allow(page, _link(caller, authz, "connecty", connected_account_id=account["id"]), authz)
    query = _back_query(page, authz)
    # Then it is the same account, active again, and calls carry the new token
    assert query["connected_account_id"] == account["id"]
    listed = caller.http.get("/connected-accounts").json()["items"]
    assert [(a["id"], a["status"]) for a in listed] == [(account["id"], "active")]
    assert _call(caller, upstream, account["id"]) == f"Bearer {authz.issued[-1]}"
