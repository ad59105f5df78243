"""The OAuth2 dance of a connect page: the redirect to the vendor (client, redirect URI,
scopes, state, PKCE S256, extra parameters), the callback (state checked, the code
exchanged with its verifier), what is stored, and every way it is refused."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from models.accounts.states import AccountStatus
from models.catalog.apps import Catalog
from models.crypto.secrets import Vault
from models.db.engine import session_scope, utcnow
from models.db.tables import ConnectedAccount, ConnectSession
from tests.api.conftest import ConnectRig
from tests.api.connect_helpers import (
    ACCESS,
    CLIENT_ID,
    CLIENT_SECRET,
    PUBLIC,
    REFRESH,
    csrf_of,
    query_of,
    token_of,
)


def _authorize(rig: ConnectRig, **body: Any) -> tuple[str, dict[str, str], str]:
    """A link opened and Connect pressed: (session id, the authorize URL's query, its URL)."""
    made = rig.session(**body).json()
    token = token_of(made["url"])
    page = rig.caller.client.get(f"/connect/{token}")
    assert page.status_code == 200, page.text
    pressed = rig.caller.client.post(
        f"/connect/{token}", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False
    )
    assert pressed.status_code == 303, pressed.text
    location = pressed.headers["location"]
    return made["id"], query_of(location), location


def _back(rig: ConnectRig, code: str, params: dict[str, str]) -> httpx.Response:
    """The vendor's answer: the browser comes back with `code` (its challenge noted)."""
    if "code_challenge" in params:
        rig.tokens.challenges[code] = params["code_challenge"]
    response: httpx.Response = rig.caller.client.get(
        "/oauth/callback", params={"code": code, "state": params["state"]}, follow_redirects=False
    )
    return response


def test_connect_sends_the_browser_to_the_vendor_with_state_and_pkce(
    connect_rig: ConnectRig,
) -> None:
    made = connect_rig.session(app="acme-oauth").json()
    page = connect_rig.caller.client.get(f"/connect/{token_of(made['url'])}")
    assert "Connect Acme OAuth" in page.text
    assert "form-action 'self' https://auth.acme.test" in page.headers["content-security-policy"]
    _, params, url = _authorize(connect_rig, app="acme-oauth")
    assert url.startswith("https://auth.acme.test/authorize?")
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == PUBLIC + "/oauth/callback"
    assert params["scope"] == "read,write"
    assert params["access_type"] == "offline"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 43
    assert CLIENT_SECRET not in url


def test_the_callback_exchanges_the_code_and_stores_the_tokens_encrypted(
    connect_rig: ConnectRig, engine: Engine, vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session_id, params, _ = _authorize(connect_rig, app="acme-oauth", scopes=["read"])
    assert params["scope"] == "read"
    answer = _back(connect_rig, "code-123", params)
    # Then the token endpoint saw the code, the verifier (checked against the challenge)
    # and the client as HTTP Basic
    assert answer.status_code == 303, answer.text
    sent = connect_rig.tokens.requests[-1]
    assert sent["grant_type"] == "authorization_code"
    assert sent["code"] == "code-123"
    assert "client_secret" not in sent
    # and the browser goes back with the account
    query = query_of(answer.headers["location"])
    assert query["app"] == "acme-oauth"
    with Session(engine) as db:
        account = db.get(ConnectedAccount, query["connected_account_id"])
        assert account is not None
        assert (account.user_id, account.source) == ("end-user-1", "connect_page")
        creds = vault.decrypt(account.credentials_enc, bound_to=account.id)
        assert (creds["access_token"], creds["refresh_token"]) == (ACCESS, REFRESH)
        assert creds["expires_at"] > utcnow().timestamp() + 3000
        # Nothing the token endpoint answered, and no verifier, is stored in clear
        session = db.get(ConnectSession, session_id)
        assert session is not None
        assert session.used_at is not None
        for row in (account.model_dump(), session.model_dump()):
            for secret in (ACCESS, REFRESH, sent["code_verifier"]):
                assert secret not in str(row)
    for secret in (ACCESS, REFRESH, CLIENT_SECRET, sent["code_verifier"]):
        assert secret not in caplog.text
        assert secret not in answer.headers["location"]


def test_a_body_authenticated_client_without_pkce(connect_rig: ConnectRig) -> None:
    _, params, _ = _authorize(connect_rig, app="acme-body")
    assert "code_challenge" not in params
    assert "scope" not in params
    answer = _back(connect_rig, "code-body", params)
    assert answer.status_code == 303
    sent = connect_rig.tokens.requests[-1]
    assert (sent["client_id"], sent["client_secret"]) == (CLIENT_ID, CLIENT_SECRET)
    assert "code_verifier" not in sent
    assert "connected_account_id" in query_of(answer.headers["location"])


def test_a_denial_goes_back_with_the_error_and_stores_nothing(
    connect_rig: ConnectRig, engine: Engine
) -> None:
    _, params, _ = _authorize(connect_rig, app="acme-oauth")
    answer = connect_rig.caller.client.get(
        "/oauth/callback",
        params={
            "error": "access_denied",
            "error_description": "<script>alert(1)</script>",
            "state": params["state"],
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    query = query_of(answer.headers["location"])
    assert query["error"] == "access_denied"
    assert query["error_description"] == "the user denied access"
    assert "connected_account_id" not in query
    assert connect_rig.tokens.requests == []
    _no_accounts(connect_rig)
    # The state is spent: coming back again is refused
    assert _back(connect_rig, "late", params).status_code == 400


def test_a_failed_exchange_goes_back_with_the_error_and_repeats_nothing_of_the_answer(
    connect_rig: ConnectRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echoed = f"bad code; client_secret={CLIENT_SECRET}"
    connect_rig.tokens.answer = lambda: httpx.Response(
        400, json={"error": "invalid_grant", "error_description": echoed}
    )
    _, params, _ = _authorize(connect_rig, app="acme-oauth")
    answer = _back(connect_rig, "code-x", params)
    assert answer.status_code == 303
    query = query_of(answer.headers["location"])
    assert query["error"] == "token_exchange_failed"
    assert query["error_description"] == "the token endpoint answered 400: invalid_grant"
    assert CLIENT_SECRET not in caplog.text
    _no_accounts(connect_rig)


def test_an_unusable_token_is_not_stored(connect_rig: ConnectRig) -> None:
    connect_rig.tokens.answer = lambda: httpx.Response(200, json={"access_token": "a\nb"})
    _, params, _ = _authorize(connect_rig, app="acme-oauth")
    query = query_of(_back(connect_rig, "code-y", params).headers["location"])
    assert query["error"] == "token_exchange_failed"
    _no_accounts(connect_rig)


@pytest.mark.parametrize("state", ["", "tampered", "x" * 5000])
def test_a_tampered_state_is_a_clear_page_and_the_real_one_still_works(
    connect_rig: ConnectRig, state: str
) -> None:
    _, params, _ = _authorize(connect_rig, app="acme-oauth")
    refused = connect_rig.caller.client.get(
        "/oauth/callback", params={"code": "c", "state": state}, follow_redirects=False
    )
    assert refused.status_code == 400
    assert "<h1>Unknown sign-in</h1>" in refused.text
    assert _back(connect_rig, "code-z", params).status_code == 303


def test_a_state_works_once(connect_rig: ConnectRig) -> None:
    _, params, _ = _authorize(connect_rig, app="acme-oauth")
    assert _back(connect_rig, "code-1", params).status_code == 303
    replay = _back(connect_rig, "code-1", params)
    assert replay.status_code == 400
    assert "Link already used" in replay.text
    assert len(connect_rig.tokens.requests) == 1


def test_pressing_connect_again_replaces_the_state(connect_rig: ConnectRig) -> None:
    made = connect_rig.session(app="acme-oauth").json()
    token = token_of(made["url"])
    page = connect_rig.caller.client.get(f"/connect/{token}")
    states = []
    for _ in range(2):
        pressed = connect_rig.caller.client.post(
            f"/connect/{token}", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False
        )
        states.append(query_of(pressed.headers["location"]))
    assert _back(connect_rig, "c-old", states[0]).status_code == 400
    assert _back(connect_rig, "c-new", states[1]).status_code == 303


def test_the_callback_must_come_to_the_browser_that_pressed_connect(
    connect_rig: ConnectRig,
) -> None:
    _, params, _ = _authorize(connect_rig, app="acme-oauth")
    connect_rig.caller.client.cookies.clear()
    refused = _back(connect_rig, "code-2", params)
    assert refused.status_code == 400
    assert "Another browser" in refused.text


def test_an_expired_session_refuses_its_callback(connect_rig: ConnectRig, engine: Engine) -> None:
    session_id, params, _ = _authorize(connect_rig, app="acme-oauth")
    with session_scope(engine) as db:
        db.exec(
            update(ConnectSession)
            .where(col(ConnectSession.id) == session_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    refused = _back(connect_rig, "code-3", params)
    assert refused.status_code == 400
    assert "Link expired" in refused.text
    assert connect_rig.tokens.requests == []


def test_a_reconnect_replaces_the_credentials_and_clears_needs_reauth(
    connect_rig: ConnectRig, engine: Engine, vault: Vault
) -> None:
    caller = connect_rig.caller
    made = caller.client.post(
        "/connected-accounts",
        json={"app": "acme-oauth", "credentials": {"access_token": "old", "refresh_token": "r"}},
        headers=caller.headers("end-user-1"),
    )
    account_id = made.json()["id"]
    with session_scope(engine) as db:
        db.exec(
            update(ConnectedAccount)
            .where(col(ConnectedAccount.id) == account_id)
            .values(status=AccountStatus.NEEDS_REAUTH)
        )
    _, params, _ = _authorize(connect_rig, app="acme-oauth", connected_account_id=account_id)
    query = query_of(_back(connect_rig, "code-re", params).headers["location"])
    assert query["connected_account_id"] == account_id
    with Session(engine) as db:
        account = db.get(ConnectedAccount, account_id)
        assert account is not None
        assert account.status == AccountStatus.ACTIVE
        assert vault.decrypt(account.credentials_enc, bound_to=account_id)["access_token"] == ACCESS
        mine = db.exec(
            select(ConnectedAccount).where(col(ConnectedAccount.tenant_id) == caller.tenant.id)
        ).all()
        assert len(mine) == 1


def _no_accounts(rig: ConnectRig) -> None:
    listed = rig.caller.client.get("/connected-accounts", headers=rig.caller.headers())
    assert listed.json()["items"] == []


def test_the_stand_in_refuses_a_verifier_that_does_not_match_its_challenge(
    connect_rig: ConnectRig,
) -> None:
    # The token endpoint's PKCE check is real: a code shown another challenge fails
    _, params, _ = _authorize(connect_rig, app="acme-oauth")
    connect_rig.tokens.challenges["code-p"] = "not-the-challenge"
    answer = connect_rig.caller.client.get(
        "/oauth/callback",
        params={"code": "code-p", "state": params["state"]},
        follow_redirects=False,
    )
    assert query_of(answer.headers["location"])["error"] == "token_exchange_failed"


def test_a_link_whose_app_lost_its_client_is_a_clear_page(connect_rig: ConnectRig) -> None:
    # Given a link, then the operator removes the app's OAuth client
    made = connect_rig.session(app="acme-oauth").json()
    connect = connect_rig.app.state.connect
    apps = {app.slug: app for app in connect.catalog}
    oauth2 = apps["acme-oauth"].oauth2.model_copy(update={"client_id": None})
    apps["acme-oauth"] = apps["acme-oauth"].model_copy(update={"oauth2": oauth2})
    connect.catalog = Catalog(apps)
    # Then its page says the app cannot be connected now, instead of failing
    page = connect_rig.caller.client.get(f"/connect/{token_of(made['url'])}")
    assert page.status_code == 400
    assert "App not available" in page.text
