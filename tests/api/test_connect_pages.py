"""The hosted connect page of an API-key or basic-auth app: labelled fields, the config
fields (choices as a select), CSRF, validation as the API validates, the account stored
encrypted with `source: connect_page`, and a link that works once and for a while."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, update
from sqlmodel import Session, col

from api.account_cap import COUNT_TTL_S
from api.connect.pages import error_page
from models.crypto.secrets import Vault
from models.db.engine import session_scope, utcnow
from models.db.tables import ConnectedAccount, ConnectSession, WebhookDelivery
from models.errors import ApiError, ErrorDetail
from tests.api.conftest import ConnectRig, make_accounts
from tests.api.connect_helpers import csrf_of, query_of, token_of

API_KEY = "acme-key-secret-9911"
_CONFIG = {"connection_config": {"subdomain": "acme"}}


def _open(rig: ConnectRig, **body: Any) -> tuple[str, httpx.Response]:
    url = rig.session(**body).json()["url"]
    token = token_of(url)
    return token, rig.caller.client.get(f"/connect/{token}")


def _post(rig: ConnectRig, token: str, form: dict[str, str]) -> httpx.Response:
    response: httpx.Response = rig.caller.client.post(
        f"/connect/{token}", data=form, follow_redirects=False
    )
    return response


def test_an_api_key_app_asks_for_the_key_and_its_config_then_stores_the_account(
    connect_rig: ConnectRig, engine: Engine, vault: Vault
) -> None:
    # Given a link for an app with an API key and a subdomain
    token, page = _open(connect_rig, app="acme-key")
    # Then the page names the app, asks for the key and the subdomain, with the console's CSP
    assert page.status_code == 200
    assert "Connect Acme Keys" in page.text
    assert ">API key</label>" in page.text
    assert ">Your Acme subdomain</label>" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "form-action 'self' https://tenant.test" in csp
    # When the end user sends them
    answer = _post(
        connect_rig,
        token,
        {"csrf_token": csrf_of(page.text), "api_key": API_KEY, "config.subdomain": "acme"},
    )
    # Then the browser goes back to the tenant with the new account
    assert answer.status_code == 303
    back = answer.headers["location"]
    assert back.startswith("https://tenant.test/connected?")
    query = query_of(back)
    assert query["from"] == "pt"
    assert query["app"] == "acme-key"
    with Session(engine) as db:
        account = db.get(ConnectedAccount, query["connected_account_id"])
        assert account is not None
        assert account.tenant_id == connect_rig.caller.tenant.id
        assert account.user_id == "end-user-1"
        assert account.source == "connect_page"
        assert account.connection_config == {"subdomain": "acme"}
        assert API_KEY not in account.credentials_enc
        assert vault.decrypt(account.credentials_enc, bound_to=account.id) == {"api_key": API_KEY}
    # and the API lists it with how it was connected
    listed = connect_rig.caller.client.get(
        "/connected-accounts", headers=connect_rig.caller.headers()
    )
    assert [a["source"] for a in listed.json()["items"]] == ["connect_page"]


def test_a_config_the_tenant_fixed_is_shown_and_the_end_user_cannot_change_it(
    connect_rig: ConnectRig, engine: Engine
) -> None:
    # Given a link whose session fixes the subdomain
    token, page = _open(connect_rig, app="acme-key", connection_config={"subdomain": "acme"})
    # Then the page shows it as text, with no input for it
    assert "Your Acme subdomain: <strong>acme</strong>" in page.text
    assert 'name="config.subdomain"' not in page.text
    # When a forged form sends another subdomain anyway
    answer = _post(
        connect_rig,
        token,
        {"csrf_token": csrf_of(page.text), "api_key": API_KEY, "config.subdomain": "evil"},
    )
    # Then the account is stored on the tenant's subdomain
    assert answer.status_code == 303
    account_id = query_of(answer.headers["location"])["connected_account_id"]
    with Session(engine) as db:
        account = db.get(ConnectedAccount, account_id)
        assert account is not None
        assert account.connection_config == {"subdomain": "acme"}


def test_a_basic_auth_app_asks_for_username_and_password_and_its_choices(
    connect_rig: ConnectRig, engine: Engine, vault: Vault
) -> None:
    token, page = _open(connect_rig, app="acme-region")
    assert ">Username</label>" in page.text
    assert ">Password</label>" in page.text
    assert '<select id="config-region" name="config.region">' in page.text
    answer = _post(
        connect_rig,
        token,
        {
            "csrf_token": csrf_of(page.text),
            "username": "ada",
            "password": "pw-secret-1",
            "config.region": "eu",
        },
    )
    assert answer.status_code == 303
    with Session(engine) as db:
        account = db.get(
            ConnectedAccount, query_of(answer.headers["location"])["connected_account_id"]
        )
        assert account is not None
        assert account.connection_config == {"region": "eu"}
        assert vault.decrypt(account.credentials_enc, bound_to=account.id) == {
            "username": "ada",
            "password": "pw-secret-1",
        }


def test_what_the_api_refuses_the_page_refuses_and_the_link_stays_usable(
    connect_rig: ConnectRig, engine: Engine
) -> None:
    token, page = _open(connect_rig, app="acme-key")
    csrf = csrf_of(page.text)
    # A key with a line break, a subdomain that smuggles a host: the page again, a 400
    for form in (
        {"api_key": "bad\nkey", "config.subdomain": "acme"},
        {"api_key": API_KEY, "config.subdomain": "evil.com/"},
        {"api_key": "", "config.subdomain": "acme"},
    ):
        refused = _post(connect_rig, token, {"csrf_token": csrf, **form})
        assert refused.status_code == 400
        assert 'role="alert"' in refused.text
        assert "bad\nkey" not in refused.text
    listed = connect_rig.caller.client.get(
        "/connected-accounts", headers=connect_rig.caller.headers()
    )
    assert listed.json()["items"] == []
    # Then it still works
    ok = _post(
        connect_rig, token, {"csrf_token": csrf, "api_key": API_KEY, "config.subdomain": "acme"}
    )
    assert ok.status_code == 303


def test_a_form_without_its_csrf_token_or_cookie_is_refused(connect_rig: ConnectRig) -> None:
    token, page = _open(connect_rig, app="acme-key")
    form = {"api_key": API_KEY, "config.subdomain": "acme"}
    refused = _post(connect_rig, token, form)
    assert refused.status_code == 403
    assert "<h1>Form expired</h1>" in refused.text  # a page for the end user, not JSON
    assert _post(connect_rig, token, {**form, "csrf_token": "0" * 64}).status_code == 403
    # The right token from another browser (no cookie) is refused too
    stranger = httpx.Client(
        transport=connect_rig.caller.client._transport, base_url="http://testserver"
    )
    response = stranger.post(f"/connect/{token}", data={**form, "csrf_token": csrf_of(page.text)})
    assert response.status_code == 403


def test_the_browser_cookie_is_host_only_and_a_planted_plain_one_binds_nothing(
    connect_rig: ConnectRig,
) -> None:
    """The page is public over https: its cookie is `__Host-` (Secure, Path=/, no Domain),
    and a `passthru_connect` a sibling subdomain planted is not read."""
    token, page = _open(connect_rig, app="acme-key")
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("__Host-passthru_connect=")
    for attribute in ("HttpOnly", "Secure", "Path=/;", "SameSite=lax"):
        assert attribute in cookie
    assert "Domain" not in cookie
    assert page.headers["strict-transport-security"] == "max-age=31536000"
    browser = cookie.split(";")[0].split("=", 1)[1]
    form = {"api_key": API_KEY, "config.subdomain": "acme", "csrf_token": csrf_of(page.text)}
    stranger = httpx.Client(
        transport=connect_rig.caller.client._transport, base_url="https://testserver"
    )
    planted = stranger.post(
        f"/connect/{token}", data=form, headers={"Cookie": f"passthru_connect={browser}"}
    )
    assert planted.status_code == 403
    own = stranger.post(
        f"/connect/{token}",
        data=form,
        headers={"Cookie": f"__Host-passthru_connect={browser}"},
        follow_redirects=False,
    )
    assert own.status_code == 303


def test_a_link_works_once(connect_rig: ConnectRig) -> None:
    token, page = _open(connect_rig, app="acme-key")
    form = {"csrf_token": csrf_of(page.text), "api_key": API_KEY, "config.subdomain": "acme"}
    assert _post(connect_rig, token, form).status_code == 303
    # Replayed: the page and the form both refuse, clearly, and nothing more is stored
    again = connect_rig.caller.client.get(f"/connect/{token}")
    assert again.status_code == 400
    assert "Link already used" in again.text
    assert _post(connect_rig, token, form).status_code == 400


def test_an_expired_or_unknown_link_is_a_clear_page(
    connect_rig: ConnectRig, engine: Engine
) -> None:
    made = connect_rig.session(app="acme-key").json()
    with session_scope(engine) as db:
        db.exec(
            update(ConnectSession)
            .where(col(ConnectSession.id) == made["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    expired = connect_rig.caller.client.get(f"/connect/{token_of(made['url'])}")
    assert expired.status_code == 400
    assert "Link expired" in expired.text
    unknown = connect_rig.caller.client.get("/connect/" + "x" * 43)
    assert unknown.status_code == 404
    assert "Unknown link" in unknown.text
    assert "script-src 'self'" in unknown.headers["content-security-policy"]


def test_a_connected_account_sends_connection_created_to_the_tenants_endpoint(
    connect_rig: ConnectRig, engine: Engine
) -> None:
    caller = connect_rig.caller
    endpoint = caller.client.put(
        "/webhook-endpoint", json={"url": "https://hooks.tenant.test/pt"}, headers=caller.headers()
    )
    assert endpoint.status_code == 200, endpoint.text
    token, page = _open(connect_rig, app="acme-key")
    answer = _post(
        connect_rig,
        token,
        {"csrf_token": csrf_of(page.text), "api_key": API_KEY, "config.subdomain": "acme"},
    )
    account_id = query_of(answer.headers["location"])["connected_account_id"]
    with Session(engine) as db:
        delivery = db.get(WebhookDelivery, "msg_" + account_id)
        assert delivery is not None
        assert delivery.event == "connection.created"
        assert delivery.account_id == account_id
    assert "msg_" + account_id in connect_rig.app.state.publisher.delivery_ids


def test_an_oversized_form_is_refused_before_it_is_parsed(connect_rig: ConnectRig) -> None:
    token, page = _open(connect_rig, app="acme-key")
    response = _post(
        connect_rig, token, {"csrf_token": csrf_of(page.text), "api_key": "k" * 70_000}
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "at most 65536 bytes" in response.text


def test_a_tenant_at_its_most_accounts_gets_the_end_user_back_with_an_error(
    connect_rig: ConnectRig, engine: Engine
) -> None:
    # Given a link made while the tenant had room, then PASSTHRU_TENANT_MAX_ACCOUNTS reached
    # (1, here) and the count read again
    token, page = _open(connect_rig, app="acme-key")
    cap = connect_rig.app.state.accounts
    cap.cap = 1
    make_accounts(engine, connect_rig.caller.tenant, 1)
    cap.monotonic = lambda: time.monotonic() + COUNT_TTL_S + 1
    # When the end user sends a key
    form = {"csrf_token": csrf_of(page.text), "api_key": API_KEY, "config.subdomain": "acme"}
    answer = _post(connect_rig, token, form)
    # Then the browser goes back to the tenant saying the account was not stored, and why
    query = query_of(answer.headers["location"])
    assert query["error"] == "account_not_stored"
    assert query["error_description"] == "account_limit_reached"
    assert "connected_account_id" not in query


def test_a_link_for_a_new_account_is_refused_at_the_cap_but_a_reconnect_is_not(
    connect_rig: ConnectRig,
) -> None:
    caller = connect_rig.caller
    made = caller.client.post(
        "/connected-accounts",
        json={"app": "acme-key", "credentials": {"api_key": API_KEY}, **_CONFIG},
        headers=caller.headers("end-user-1"),
    )
    assert made.status_code == 201, made.text
    # Given a tenant at its most accounts (the one it has)
    connect_rig.app.state.accounts.cap = 1
    # When it asks for a link / Then one for a new account is refused before the end user
    # goes through it, and one that reconnects the account is made
    refused = connect_rig.session(expect=403, app="acme-key")
    assert refused.json()["error"] == "account_limit_reached"
    connect_rig.session(app="acme-key", connected_account_id=made.json()["id"])


def test_a_redirect_url_with_an_international_or_ip_v6_host_gets_a_page_not_a_500(
    connect_rig: ConnectRig,
) -> None:
    for redirect, source in [
        ("https://例え.jp/cb", "https://xn--r8jz45g.jp"),
        ("https://exämple.com/cb", "https://xn--exmple-cua.com"),
        ("http://[::1]:8080/cb", "http:"),  # CSP cannot name an IP v6 host
    ]:
        token, page = _open(connect_rig, app="acme-key", redirect_url=redirect)
        assert page.status_code == 200, redirect
        csp = page.headers["content-security-policy"]
        assert f"form-action 'self' {source};" in csp, csp
        answer = _post(
            connect_rig,
            token,
            {"csrf_token": csrf_of(page.text), "api_key": API_KEY, "config.subdomain": "acme"},
        )
        assert answer.status_code == 303, redirect
        assert httpx.URL(answer.headers["location"]).host == httpx.URL(redirect).host


def test_a_refusal_shown_as_a_page_keeps_its_headers() -> None:
    """A refusal's own headers (a 503's Retry-After) reach the end user's browser beside
    the page's security headers."""
    refusal = ApiError(
        "unavailable", [ErrorDetail("request", "busy; try again")], 503, {"Retry-After": "1"}
    )
    page = error_page(refusal)
    assert page.status_code == 503
    assert page.headers["retry-after"] == "1"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "busy; try again" in page.body.decode()


def test_the_database_down_is_a_page_for_the_end_user_with_its_retry_after(
    connect_rig: ConnectRig, tmp_path: Any
) -> None:
    token, page = _open(connect_rig, app="acme-key")
    form = {"api_key": API_KEY, "config.subdomain": "acme", "csrf_token": csrf_of(page.text)}
    connect = connect_rig.app.state.connect
    working = connect.engine
    connect.engine = create_engine(f"sqlite:///{tmp_path}/no/such/dir/passthru.db")
    try:
        answers = [
            connect_rig.caller.client.get(f"/connect/{token}"),
            _post(connect_rig, token, form),
            connect_rig.caller.client.get("/oauth/callback", params={"state": "s", "code": "c"}),
        ]
    finally:
        connect.engine = working
    for answer in answers:
        assert answer.status_code == 503
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.headers["retry-after"]
        assert "the database is unavailable; retry shortly" in answer.text
    # ... and the link still works once the database is back
    assert connect_rig.caller.client.get(f"/connect/{token}").status_code == 200
