"""`POST /connect-sessions`: a single-use link under PASSTHRU_PUBLIC_URL, its token stored
only as a hash; every refusal in the error shape, every input bounded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from api.connect.sessions import digest
from models.db.tables import ConnectSession, Tenant
from tests.api.conftest import Caller, ConnectRig
from tests.api.connect_helpers import PUBLIC, REDIRECT, token_of
from tests.api.test_errors import assert_error_shape


def _stored(engine: Engine, session_id: str) -> ConnectSession:
    with Session(engine) as db:
        row = db.get(ConnectSession, session_id)
        assert row is not None
        return row


def test_a_session_is_a_link_under_the_public_url_whose_token_is_kept_only_hashed(
    connect_rig: ConnectRig, engine: Engine
) -> None:
    # When a tenant asks for a link for its user (named by X-User-ID)
    body = connect_rig.session(app="acme-oauth").json()
    # Then it is under PASSTHRU_PUBLIC_URL, lasts 10 minutes, and its token is not stored
    assert set(body) == {"id", "url", "expires_at"}
    assert body["url"].startswith(PUBLIC + "/connect/")
    token = token_of(body["url"])
    assert len(token) >= 43  # 32 random bytes
    row = _stored(engine, body["id"])
    assert row.user_id == "end-user-1"
    assert row.token_hash == digest(token)
    assert row.expires_at - row.created_at == timedelta(minutes=10)
    with Session(engine) as db:
        for stored in db.exec(select(ConnectSession)).all():
            assert token not in str(stored.model_dump())


def test_the_body_names_the_user_over_the_header_and_tokens_differ(
    connect_rig: ConnectRig, engine: Engine
) -> None:
    one = connect_rig.session(app="acme-key", user_id="body-user").json()
    two = connect_rig.session(app="acme-key", user_id="body-user").json()
    assert _stored(engine, one["id"]).user_id == "body-user"
    assert token_of(one["url"]) != token_of(two["url"])


def test_the_link_lifetime_is_a_setting(
    connect_rig: ConnectRig, make_app: Callable[..., FastAPI], engine: Engine
) -> None:
    app = make_app(connect_session_ttl_s=60)
    caller = connect_rig.caller
    response = TestClient(app).post(
        "/connect-sessions",
        json={"app": "hunter", "redirect_url": REDIRECT},
        headers=caller.headers("u"),
    )
    assert response.status_code == 201, response.text
    row = _stored(engine, response.json()["id"])
    assert row.expires_at - row.created_at == timedelta(seconds=60)


@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        ({"app": "nope"}, "app", "unknown_app"),
        ({"app": "acme-key", "redirect_url": "http://tenant.test/back"}, "redirect_url", None),
        ({"app": "acme-key", "redirect_url": "ftp://tenant.test/"}, "redirect_url", None),
        ({"app": "acme-key", "redirect_url": "https://u:p@tenant.test/"}, "redirect_url", None),
        ({"app": "acme-key", "redirect_url": "https://tenant.test/#x"}, "redirect_url", None),
        ({"app": "acme-key", "redirect_url": "/relative"}, "redirect_url", None),
        ({"app": "acme-key", "scopes": ["read"]}, "scopes", None),
        ({"app": "acme-oauth", "scopes": ["a b"]}, "scopes", None),
        ({"app": "acme-key", "connection_config": {"subdomain": "evil.com/"}}, None, None),
        ({"app": "acme-region", "connection_config": {"region": "mars"}}, None, None),
        ({"app": "acme-manual"}, "app", "app_not_connectable"),  # no authorize_url
        ({"app": "slack"}, "app", "app_not_connectable"),  # no operator client here
        ({"app": "paypal"}, "app", "app_not_connectable"),  # the client credentials grant
        ({"app": "acme-key", "surprise": 1}, None, None),
    ],
)
def test_refusals_are_400s_in_the_error_shape(
    connect_rig: ConnectRig, body: dict[str, object], field: str | None, error: str | None
) -> None:
    response = connect_rig.session(expect=400, **body)
    assert_error_shape(response.json(), error)
    if field is not None:
        assert response.json()["error_details"][0]["field"] == field


def test_a_client_credentials_app_is_refused_saying_why(connect_rig: ConnectRig) -> None:
    response = connect_rig.session(expect=400, app="personio")
    message = response.json()["error_details"][0]["message"]
    assert "client credentials grant" in message
    assert "POST /connected-accounts" in message


def test_a_built_in_oauth_app_with_the_operators_client_is_connectable(
    make_app: Callable[..., FastAPI], tenant_and_key: tuple[Tenant, str]
) -> None:
    clients = {"slack": {"client_id": "slack-client", "client_secret": "slack-secret-9"}}
    app = make_app(oauth_clients=clients, public_url=PUBLIC)
    tenant, key = tenant_and_key
    caller = Caller(TestClient(app), tenant, key)
    response = caller.client.post(
        "/connect-sessions",
        json={"app": "slack", "redirect_url": REDIRECT},
        headers=caller.headers("u"),
    )
    assert response.status_code == 201, response.text


def test_a_user_is_required(connect_rig: ConnectRig) -> None:
    response = connect_rig.session(expect=400, user=None, app="acme-key")
    assert_error_shape(response.json())
    assert response.json()["error_details"][0]["field"] == "user_id"


@pytest.mark.parametrize(
    "redirect_url",
    ["http://127.0.0.1:3000/cb", "http://localhost/cb", "http://[::1]:8080/cb", REDIRECT],
)
def test_https_or_loopback_http_redirects_are_taken(
    connect_rig: ConnectRig, redirect_url: str
) -> None:
    connect_rig.session(app="acme-key", redirect_url=redirect_url)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"redirect_url": "https://tenant.test/" + "a" * 2100}, "redirect_url"),
        ({"user_id": "u" * 201}, "user_id"),
        ({"app": "a" * 81}, "app"),
        ({"scopes": ["s"] * 51}, "scopes"),
        ({"scopes": ["s" * 201]}, "scopes"),
        ({"connection_config": {f"k{i}": "v" for i in range(21)}}, "connection_config"),
        ({"connection_config": {"subdomain": "v" * 256}}, "connection_config"),
        ({"connected_account_id": "c" * 41}, "connected_account_id"),
    ],
)
def test_every_input_is_bounded(
    connect_rig: ConnectRig, body: dict[str, object], field: str
) -> None:
    response = connect_rig.session(expect=400, **{"app": "acme-oauth", **body})
    assert_error_shape(response.json())
    assert response.json()["error_details"][0]["field"].startswith(field)


def test_a_reconnect_names_an_account_of_this_tenant_app_and_user(
    connect_rig: ConnectRig,
) -> None:
    caller = connect_rig.caller
    made = caller.client.post(
        "/connected-accounts",
        json={
            "app": "acme-key",
            "credentials": {"api_key": "k-1"},
            "connection_config": {"subdomain": "acme"},
        },
        headers=caller.headers("owner"),
    )
    assert made.status_code == 201, made.text
    account_id = made.json()["id"]
    # Another app, another user, an unknown id: refused
    assert (
        connect_rig.session(expect=400, app="acme-oauth", connected_account_id=account_id).json()[
            "error_details"
        ][0]["field"]
        == "connected_account_id"
    )
    assert (
        connect_rig.session(
            expect=400, user="someone-else", app="acme-key", connected_account_id=account_id
        ).json()["error_details"][0]["field"]
        == "user_id"
    )
    connect_rig.session(expect=404, app="acme-key", connected_account_id="ca_nope")
    # The account's own user comes from the account when none is named
    connect_rig.session(user=None, app="acme-key", connected_account_id=account_id)


def test_another_tenants_account_is_a_404(connect_rig: ConnectRig, engine: Engine) -> None:
    from models.accounts.tenants import create_tenant

    _, key = create_tenant(engine, "other-connect")
    made = connect_rig.caller.client.post(
        "/connected-accounts",
        json={
            "app": "acme-key",
            "credentials": {"api_key": "k-1"},
            "connection_config": {"subdomain": "acme"},
        },
        headers={"Authorization": f"Bearer {key}", "X-User-ID": "end-user-1"},
    )
    assert made.status_code == 201
    response = connect_rig.session(
        expect=404, app="acme-key", connected_account_id=made.json()["id"]
    )
    assert_error_shape(response.json(), "not_found")


def test_without_an_api_key_it_is_a_401(connect_rig: ConnectRig) -> None:
    response = connect_rig.caller.client.post(
        "/connect-sessions", json={"app": "acme-key", "redirect_url": REDIRECT}
    )
    assert response.status_code == 401
    assert_error_shape(response.json())


def test_a_tenant_holds_a_bounded_number_of_open_links(
    connect_rig: ConnectRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a bound of 3 unused, unexpired links per tenant, and 3 made
    monkeypatch.setattr("api.connect.sessions.MAX_OPEN_LINKS", 3)
    for _ in range(3):
        connect_rig.session(app="acme-key")
    # When a fourth is asked for / Then it is a 429 naming the bound, in the error shape
    refused = connect_rig.session(expect=429, app="acme-key")
    assert_error_shape(refused.json(), "too_many_requests")
    assert refused.json()["error_details"][0]["field"] == "connect_sessions"
    assert int(refused.headers["retry-after"]) > 0
