"""The console over HTTP: its cookies, its CSRF checks, what Redis keeps of a session,
hostile input answered with a clear 4xx page, and the batches, connected accounts and
webhook deliveries pages: tenancy, state machine, rate limit."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine

from api.app import create_app, release
from api.call_log import LogFilter, list_calls
from api.console.manage import ACCOUNTS_SHOWN
from api.console.sessions import PRESESSION_COOKIE, SESSION_COOKIE, SessionStore
from api.key_lookups import KeyLookups
from api.quotas import Quotas
from api.redis_rates import quotas_client
from models.accounts.states import AccountStatus
from models.calls.states import CallStatus
from models.crypto.secrets import Vault, hash_api_key
from models.db.engine import session_scope, utcnow
from models.db.ids import new_id
from models.db.tables import Batch, ConnectedAccount, WebhookAttempt, WebhookDelivery
from models.webhooks.signing import message_id
from models.webhooks.states import DeliveryStatus
from tests.api.conftest import PublishedIds, make_accounts, stored_call
from tests.console.conftest import Tenancy, TestClient, csrf_of, sign_in
from tests.worker.factories import make_account


def test_the_session_cookie_is_httponly_strict_and_secure_over_https(
    console_app: FastAPI, tenancy: Tenancy
) -> None:
    for base_url, headers, secure in (
        ("http://testserver", {}, False),
        ("https://testserver", {}, True),
        ("http://testserver", {"X-Forwarded-Proto": "https"}, True),
    ):
        with TestClient(console_app, base_url=base_url, follow_redirects=False) as client:
            form = client.get("/console/sign-in", headers=headers)
            token = csrf_of(form.text)
            # (a client sends a Secure cookie over https only: here it is sent by hand)
            pre = form.headers["set-cookie"].split(";")[0]
            client.cookies.clear()
            response = client.post(
                "/console/sign-in",
                data={"api_key": tenancy.key, "csrf_token": token},
                headers={**headers, "Cookie": pre},
            )
            assert response.status_code == 303, (base_url, headers)
            cookies = [form.headers["set-cookie"], response.headers.get_list("set-cookie")[0]]
            # Over https the names are host-only (`__Host-`: Secure, Path=/, no Domain)
            prefix = "__Host-" if secure else ""
            assert pre.startswith(f"{prefix}{PRESESSION_COOKIE}=")
            assert cookies[1].startswith(f"{prefix}{SESSION_COOKIE}=")
            for cookie in cookies:
                assert "HttpOnly" in cookie
                assert "SameSite=strict" in cookie
                assert ("Path=/;" in cookie) is secure
                assert ("Path=/console;" in cookie) is not secure
                assert "Domain" not in cookie
                assert ("Secure" in cookie) is secure, (base_url, headers, cookie)


def test_over_https_a_cookie_planted_without_the_host_prefix_is_not_read(
    console_app: FastAPI, tenancy: Tenancy
) -> None:
    """A sibling subdomain can set `passthru_console` for this host, never `__Host-…`."""
    with TestClient(console_app, base_url="http://testserver", follow_redirects=False) as plain:
        sign_in(plain, tenancy.key)
        session = plain.cookies[SESSION_COOKIE]  # a real session, opened over http
    https = {"X-Forwarded-Proto": "https"}
    with TestClient(console_app, follow_redirects=False) as client:
        planted = client.get("/console", headers={**https, "Cookie": f"{SESSION_COOKIE}={session}"})
        assert planted.headers["location"] == "/console/sign-in"
        form = client.get(
            "/console/sign-in", headers={**https, "Cookie": f"{PRESESSION_COOKIE}={'a' * 43}"}
        )
        # The planted pre-session value binds nothing: a new one is made, host-only
        made = form.headers["set-cookie"].split(";")[0]
        assert made.startswith(f"__Host-{PRESESSION_COOKIE}=")
        assert made.split("=", 1)[1] != "a" * 43
        own = client.get(
            "/console", headers={**https, "Cookie": f"__Host-{SESSION_COOKIE}={session}"}
        )
        assert own.status_code == 200


def test_cookies_are_secure_when_the_public_url_is_https_whatever_the_proxy_says(
    console_app: FastAPI,
) -> None:
    settings = console_app.state.settings.model_copy(update={"public_url": "https://pt.example"})
    app = create_app(settings, publisher=PublishedIds())

    def broken() -> None:
        raise RuntimeError("a defect")

    app.add_api_route("/broken", broken)
    try:
        client = TestClient(
            app, base_url="http://testserver", follow_redirects=False, raise_server_exceptions=False
        )
        form = client.get("/console/sign-in")  # a proxy that sends no X-Forwarded-Proto
        health = client.get("/healthz")
        failed = client.get("/broken")
    finally:
        release(app)
    assert "Secure" in form.headers["set-cookie"]
    assert form.headers["set-cookie"].startswith("__Host-")
    # ... and every answer tells browsers to come back over https only, a 500 too (Starlette
    # answers it outside every middleware)
    assert failed.status_code == 500
    assert failed.json()["error"] == "internal_error"
    for response in (form, health, failed):
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/console/", 307),  # the slash dropped, by a redirect no page route answers
        ("GET", "/console/no-such-page", 404),
        ("DELETE", "/console/sign-in", 405),
        ("GET", "/function-calls/", 307),
        ("GET", "/healthz", 200),
    ],
)
def test_answers_no_page_route_makes_are_never_sniffed_or_framed(
    browser_client: TestClient, method: str, path: str, status: int
) -> None:
    response = browser_client.request(method, path)
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_a_console_address_no_page_has_is_a_404_page(browser_client: TestClient) -> None:
    response = browser_client.get("/console/no-such-page")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "no such page in the console" in response.text
    assert "<h1>404: not found</h1>" in response.text


def test_a_method_a_console_page_does_not_take_is_a_405_page_naming_those_it_does(
    browser_client: TestClient,
) -> None:
    response = browser_client.delete("/console/sign-in")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["allow"] == "GET, POST"
    assert "this endpoint takes GET or POST, not DELETE" in response.text


@pytest.mark.parametrize("path", ["/no-such-endpoint", "/consoles", "/function-calls/x/y/z"])
def test_a_404_outside_the_console_is_still_json(browser_client: TestClient, path: str) -> None:
    response = browser_client.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_a_page_keeps_its_own_headers_once(browser_client: TestClient) -> None:
    page = browser_client.get("/console/sign-in")
    assert page.headers.get_list("x-frame-options") == ["DENY"]
    assert page.headers.get_list("x-content-type-options") == ["nosniff"]


def test_no_hsts_while_the_public_url_is_plain_http(browser_client: TestClient) -> None:
    for path in ("/console/sign-in", "/healthz"):
        assert "strict-transport-security" not in browser_client.get(path).headers


def test_a_planted_pre_session_cookie_is_replaced_and_never_signed(
    console_app: FastAPI,
) -> None:
    client = TestClient(console_app, follow_redirects=False)
    client.cookies.set(PRESESSION_COOKIE, "connect:cs_x:browser", path="/console")
    form = client.get("/console/sign-in")
    # The page binds its form to a token of its own making, set in place of the planted one
    made = form.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert made != "connect:cs_x:browser"
    assert len(made) == 43
    assert csrf_of(form.text) == console_app.state.console.csrf.token_for("sign-in", made)


def test_redis_keeps_neither_the_key_nor_the_session_token(
    browser_client: TestClient, tenancy: Tenancy, redis_server: object
) -> None:
    sign_in(browser_client, tenancy.key)
    token = browser_client.cookies[SESSION_COOKIE]
    client = redis.Redis.from_url(redis_server.url)  # type: ignore[attr-defined]
    stored = {k: client.get(k) for k in client.scan_iter("passthru:console-session:*")}
    # ... nor does the index of the key's sessions (named by the key's hash)
    index = {
        k: b" ".join(client.zrange(k, 0, -1))
        for k in client.scan_iter("passthru:console-sessions-of:*")
    }
    client.close()
    assert hash_api_key(tenancy.key).encode() in stored.values()
    assert f"passthru:console-sessions-of:{hash_api_key(tenancy.key)}".encode() in index
    dump = b" ".join([*stored, *(v or b"" for v in stored.values()), *index, *index.values()])
    assert tenancy.key.encode() not in dump
    assert token.encode() not in dump


def test_posts_without_the_right_csrf_token_are_refused(
    console_app: FastAPI,
    browser_client: TestClient,
    tenancy: Tenancy,
    new_tenancy: Callable[[], Tenancy],
) -> None:
    call = tenancy.call()
    # A sign-in without the form's token, or with another browser's, is refused
    assert browser_client.post("/console/sign-in", data={"api_key": tenancy.key}).status_code == 403
    token = sign_in(browser_client, tenancy.key)
    with TestClient(console_app, follow_redirects=False) as other:
        foreign = sign_in(other, new_tenancy().key)  # another browser's session
    # Cancel and sign-out need the session's token: none, a wrong one and a foreign one fail
    for bad in (None, "0" * 64, "é" * 10, token[:-1], foreign):
        data = {} if bad is None else {"csrf_token": bad}
        cancel = browser_client.post(f"/console/calls/{call.id}/cancel", data=data)
        assert cancel.status_code == 403
        assert "expired" in cancel.text
        assert browser_client.post("/console/sign-out", data=data).status_code == 403
    assert stored_call(tenancy.engine, call.id).status is CallStatus.QUEUED
    assert browser_client.get("/console").status_code == 200  # still signed in
    # With it, both work
    cancel = browser_client.post(f"/console/calls/{call.id}/cancel", data={"csrf_token": token})
    assert cancel.status_code == 303
    assert stored_call(tenancy.engine, call.id).status is CallStatus.CANCELLED
    assert browser_client.post("/console/sign-out", data={"csrf_token": token}).status_code == 303
    assert browser_client.get("/console").headers["location"] == "/console/sign-in"


def test_a_signed_out_browser_is_sent_to_sign_in(browser_client: TestClient) -> None:
    for path in ("/console", "/console/calls/fc_x"):
        response = browser_client.get(path)
        assert (response.status_code, response.headers["location"]) == (303, "/console/sign-in")
    browser_client.cookies.set(SESSION_COOKIE, "forged", path="/console")
    assert browser_client.get("/console").status_code == 303
    assert browser_client.post("/console/calls/fc_x/cancel").status_code == 303


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("network_code=abc", "network_code"),
        ("network_code=%D9%A4%D9%A4%D9%A4", "network_code"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00", "until"),
        # (moments whose offset puts them before year 1 or after 9999 once in UTC)
        ("since=0001-01-01T00:00:00%2B01:00", "since"),
        ("until=9999-12-31T23:59:59-01:00", "until"),
        ("user_id=" + "u" * 600, "user_id"),
        ("app=%3Cscript%3E", None),
        ("cursor=%27%3B--", "cursor"),
    ],
)
def test_hostile_query_strings_are_a_clear_4xx(
    browser_client: TestClient, tenancy: Tenancy, query: str, field: str | None
) -> None:
    sign_in(browser_client, tenancy.key)
    response = browser_client.get(f"/console?{query}")
    if field is None:
        assert response.status_code == 200
        assert "<script>" not in response.text.split("<main")[1]
    else:
        assert response.status_code == 400
        assert f"<strong>{field}</strong>" in response.text


def test_hostile_forms_and_ids_are_a_clear_4xx(
    browser_client: TestClient, tenancy: Tenancy
) -> None:
    token = csrf_of(browser_client.get("/console/sign-in").text)
    assert PRESESSION_COOKIE in browser_client.cookies
    for body, status in (
        (b"\xff\xfe", 400),
        (("&".join(f"f{i}=x" for i in range(50))).encode(), 400),
        (f"csrf_token={token}&api_key=".encode(), 400),
        (f"csrf_token={token}&api_key={'k' * 600}".encode(), 400),
        (f"csrf_token={token}&api_key=%00".encode(), 400),
        (f"csrf_token={token}&api_key=wrong".encode(), 401),
    ):
        response = browser_client.post(
            "/console/sign-in",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == status, body
        assert response.headers["content-type"].startswith("text/html")
    sign_in(browser_client, tenancy.key)
    assert browser_client.get("/console/calls/" + "x" * 100).status_code == 400
    assert browser_client.get("/console/calls/%3Cscript%3E").status_code == 404


# --- part 2: batches, connected accounts, webhook deliveries ------------------------------


def make_batch(tenancy: Tenancy, statuses: list[CallStatus], rejected: int = 0) -> str:
    """A batch of `tenancy` with one call in each of `statuses`."""
    batch = Batch(
        id=new_id("fb"), tenant_id=tenancy.tenant.id, accepted=len(statuses), rejected=rejected
    )
    with session_scope(tenancy.engine) as session:
        session.add(batch)
    for status in statuses:
        tenancy.call(status=status, batch_id=batch.id)
    return batch.id


def count_of(html: str, status: str) -> int:
    found = re.search(rf'class="count-{status}">.*?<span class="n">(\d+)</span>', html, re.S)
    assert found, status
    return int(found.group(1))


def test_batches_are_listed_newest_first_with_their_counts_per_status(
    browser_client: TestClient, tenancy: Tenancy
) -> None:
    S = CallStatus
    older = make_batch(tenancy, [S.COMPLETED, S.COMPLETED, S.FAILED, S.QUEUED], rejected=1)
    newer = make_batch(tenancy, [S.RUNNING, S.RETRYING, S.CANCELLED])
    sign_in(browser_client, tenancy.key)
    listing = browser_client.get("/console/batches")
    assert listing.status_code == 200
    assert listing.text.index(newer) < listing.text.index(older)
    assert "3 of 4 ended; 1 rejected" in listing.text
    page = browser_client.get(f"/console/batches/{older}").text
    expected = {"completed": 2, "failed": 1, "queued": 1, "running": 0, "cancelled": 0}
    assert {s: count_of(page, s) for s in expected} == expected
    assert f'href="/console?batch_id={older}"' in page
    page = browser_client.get(f"/console/batches/{newer}").text
    assert [count_of(page, s) for s in ("running", "retrying", "cancelled")] == [1, 1, 1]
    # The bar's segments cover the ended and unfinished calls, in proportion
    assert (
        'class="seg seg-completed" x="0.0" y="0" width="50.0"'
        in browser_client.get(f"/console/batches/{older}").text
    )


def accounts_page(client: TestClient) -> str:
    response = client.get("/console/accounts")
    assert response.status_code == 200
    text: str = response.text
    return text


def set_status(tenancy: Tenancy, account_id: str, status: AccountStatus) -> None:
    with session_scope(tenancy.engine) as session:
        account = session.get(ConnectedAccount, account_id)
        assert account is not None
        account.status = status


def stored_status(tenancy: Tenancy) -> str:
    with session_scope(tenancy.engine) as session:
        account = session.get(ConnectedAccount, tenancy.account.id)
        assert account is not None
        return str(account.status)


def test_accounts_show_their_status_and_disable_then_enable(
    browser_client: TestClient, tenancy: Tenancy, vault: Vault
) -> None:
    reauth = make_account(tenancy.engine, tenancy.tenant, vault, app="github")
    set_status(tenancy, reauth.id, AccountStatus.NEEDS_REAUTH)
    token = sign_in(browser_client, tenancy.key)
    page = accounts_page(browser_client)
    assert "Needs reauth" in page
    assert "active" in page
    assert "credentials_enc" not in page
    assert tenancy.account.credentials_enc not in page
    path = f"/console/accounts/{tenancy.account.id}/status"
    response = browser_client.post(path, data={"csrf_token": token, "status": "disabled"})
    assert (response.status_code, response.headers["location"]) == (303, "/console/accounts")
    assert stored_status(tenancy) == "disabled"
    assert "Disabled" in accounts_page(browser_client)
    assert browser_client.post(path, data={"csrf_token": token, "status": "active"}).is_redirect
    assert stored_status(tenancy) == "active"
    # The state machine: a needs_reauth account is not enabled without new credentials
    refused = browser_client.post(
        f"/console/accounts/{reauth.id}/status", data={"csrf_token": token, "status": "active"}
    )
    assert refused.status_code == 400
    assert "needs new credentials" in refused.text
    # A status the API does not allow, or none, is a 400 naming it
    for bad in ("needs_reauth", "", "x" * 600):
        response = browser_client.post(path, data={"csrf_token": token, "status": bad})
        assert response.status_code == 400
        assert "<strong>status</strong>" in response.text


ACCOUNT_ROW = re.compile(r'<td data-label="Account"><code>(ca_\w+)</code></td>')
NEXT_ACCOUNTS = re.compile(r'<a href="(/console/accounts\?cursor=[^"]+)" rel="next">Next</a>')


def test_accounts_page_by_page_via_next(browser_client: TestClient, tenancy: Tenancy) -> None:
    # Given more accounts than a page shows (the tenancy's own one the newest)
    made = [tenancy.account.id, *make_accounts(tenancy.engine, tenancy.tenant, ACCOUNTS_SHOWN)]
    sign_in(browser_client, tenancy.key)
    # When the first page is read, then the page its Next link leads to
    first = accounts_page(browser_client)
    link = NEXT_ACCOUNTS.search(first)
    assert link
    second = browser_client.get(link.group(1).replace("&amp;", "&"))
    assert second.status_code == 200
    # Then the newest come first, the older ones after, none twice and none missed
    assert len(ACCOUNT_ROW.findall(first)) == ACCOUNTS_SHOWN
    assert ACCOUNT_ROW.findall(first) + ACCOUNT_ROW.findall(second.text) == made
    assert NEXT_ACCOUNTS.search(second.text) is None
    assert 'href="/console/accounts">Back to the newest' in second.text
    assert "Back to the newest" not in first


def test_a_bad_accounts_cursor_is_a_400_page_naming_it(
    browser_client: TestClient, tenancy: Tenancy
) -> None:
    sign_in(browser_client, tenancy.key)
    for cursor in ("ca_nope", tenancy.account.id, "%27%3B--", "%3Cscript%3E", "x" * 600):
        response = browser_client.get(f"/console/accounts?cursor={cursor}")
        assert response.status_code == 400, cursor
        assert "<strong>cursor</strong>" in response.text
        assert "<script>" not in response.text.split("<main")[1]


def test_a_bad_log_cursor_is_a_400_page_naming_it(
    browser_client: TestClient, tenancy: Tenancy
) -> None:
    sign_in(browser_client, tenancy.key)
    for cursor in ("fc_nope", tenancy.account.id, "%27%3B--", "%3Cscript%3E", "fc_" + "z" * 600):
        response = browser_client.get(f"/console?cursor={cursor}")
        assert response.status_code == 400, cursor
        assert "<strong>cursor</strong>" in response.text
        assert "<script>" not in response.text.split("<main")[1]


def test_an_account_changed_meanwhile_is_a_409_page(
    browser_client: TestClient, tenancy: Tenancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = sign_in(browser_client, tenancy.key)
    from api import account_store

    read = account_store.get_account

    def revoked_meanwhile(*args: object) -> ConnectedAccount:
        account = read(*args)  # type: ignore[arg-type]
        set_status(tenancy, account.id, AccountStatus.NEEDS_REAUTH)  # a worker revokes it
        return account

    monkeypatch.setattr(account_store, "get_account", revoked_meanwhile)
    path = f"/console/accounts/{tenancy.account.id}/status"
    response = browser_client.post(path, data={"csrf_token": token, "status": "disabled"})
    assert response.status_code == 409
    assert "changed meanwhile" in response.text
    assert stored_status(tenancy) == "needs_reauth"


def finished_call(tenancy: Tenancy) -> str:
    return tenancy.call(status=CallStatus.COMPLETED, callback_url="https://hooks.example.com/in").id


def test_a_calls_deliveries_show_and_redeliver_sends_again(
    browser_client: TestClient, tenancy: Tenancy, console_published: PublishedIds
) -> None:
    call_id = finished_call(tenancy)
    token = sign_in(browser_client, tenancy.key)
    assert "No webhook delivery." in browser_client.get(f"/console/calls/{call_id}").text
    response = browser_client.post(
        f"/console/calls/{call_id}/redeliver", data={"csrf_token": token}
    )
    assert (response.status_code, response.headers["location"]) == (
        303,
        f"/console/calls/{call_id}",
    )
    delivery_id = message_id(call_id)
    assert delivery_id in console_published.delivery_ids
    with session_scope(tenancy.engine) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        delivery.status, delivery.attempt_count = DeliveryStatus.FAILED, 3
        session.add(
            WebhookAttempt(
                delivery_id=delivery_id,
                number=3,
                started_at=utcnow(),
                duration_ms=40,
                status_code=503,
                decision="gave up",
            )
        )
    # An unfinished call has nothing to send yet: a 409 page, and no button
    queued = tenancy.call().id
    response = browser_client.post(f"/console/calls/{queued}/redeliver", data={"csrf_token": token})
    assert response.status_code == 409
    assert "no result to send yet" in response.text
    assert "Redeliver" not in browser_client.get(f"/console/calls/{queued}").text
    page = browser_client.get(f"/console/calls/{call_id}").text
    assert f"<title>{call_id} · passthru console</title>" in page
    assert "Redeliver the webhook" in page
    row = page.split('class="log deliveries"')[1]
    for shown in ("https://hooks.example.com/in", "failed", ">3<", "HTTP 503"):
        assert shown in row, shown


@pytest.fixture
def one_redelivery_a_minute(console_app: FastAPI, engine: Engine) -> Iterator[None]:
    kept = console_app.state.quotas
    settings = console_app.state.settings.model_copy(update={"tenant_redeliveries_per_min": 1})
    client = quotas_client(settings.redis_url)
    console_app.state.quotas = Quotas.of(settings, client, engine)
    yield
    console_app.state.quotas = kept
    client.close()


def test_the_redelivery_rate_limit_answers_with_a_clear_page(
    browser_client: TestClient, tenancy: Tenancy, one_redelivery_a_minute: None
) -> None:
    call_id = finished_call(tenancy)
    token = sign_in(browser_client, tenancy.key)
    path = f"/console/calls/{call_id}/redeliver"
    assert browser_client.post(path, data={"csrf_token": token}).status_code == 303
    refused = browser_client.post(path, data={"csrf_token": token})
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("text/html")
    assert "PASSTHRU_TENANT_REDELIVERIES_PER_MIN" in refused.text


def test_the_new_posts_need_the_csrf_token(
    browser_client: TestClient, tenancy: Tenancy, console_published: PublishedIds
) -> None:
    token = sign_in(browser_client, tenancy.key)
    account = f"/console/accounts/{tenancy.account.id}/status"
    call_id = finished_call(tenancy)
    for bad in (None, "0" * 64, token[:-1]):
        data = {} if bad is None else {"csrf_token": bad}
        response = browser_client.post(account, data={**data, "status": "disabled"})
        assert response.status_code == 403
        response = browser_client.post(f"/console/calls/{call_id}/redeliver", data=data)
        assert response.status_code == 403
    assert stored_status(tenancy) == "active"
    assert message_id(call_id) not in console_published.delivery_ids


def test_a_second_tenant_can_neither_see_nor_change_the_firsts(
    browser_client: TestClient, new_tenancy: Callable[[], Tenancy]
) -> None:
    first, second = new_tenancy(), new_tenancy()
    batch_id = make_batch(first, [CallStatus.COMPLETED])
    call_id = finished_call(first)
    token = sign_in(browser_client, second.key)
    assert first.account.id not in accounts_page(browser_client)
    assert batch_id not in browser_client.get("/console/batches").text
    assert browser_client.get(f"/console/batches/{batch_id}").status_code == 404
    forged: tuple[tuple[str, dict[str, str]], ...] = (
        (f"/console/accounts/{first.account.id}/status", {"status": "disabled"}),
        (f"/console/calls/{call_id}/redeliver", {}),
    )
    for path, data in forged:
        response = browser_client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 404, path
    assert stored_status(first) == "active"
    with session_scope(first.engine) as session:
        assert session.get(WebhookDelivery, message_id(call_id)) is None


def test_hostile_ids_on_the_new_pages_are_a_clear_4xx(
    browser_client: TestClient, tenancy: Tenancy
) -> None:
    token = sign_in(browser_client, tenancy.key)
    for path, status in (
        ("/console/batches/" + "x" * 100, 400),
        ("/console/batches/%3Cscript%3E", 404),
        ("/console/batches/%27%3B--", 404),
        ("/console/batches?cursor=%27%3B--", 400),
    ):
        response = browser_client.get(path)
        assert response.status_code == status, path
        assert "<script>" not in response.text.split("<main")[1]
    for path in (
        "/console/accounts/" + "x" * 100 + "/status",
        "/console/calls/" + "x" * 100 + "/redeliver",
    ):
        response = browser_client.post(path, data={"csrf_token": token, "status": "disabled"})
        assert response.status_code == 400, path
    response = browser_client.post(
        "/console/accounts/ca_nope/status", data={"csrf_token": token, "status": "disabled"}
    )
    assert response.status_code == 404
    for path in ("/console/batches", "/console/accounts", "/console/batches/fb_x"):
        browser_client.cookies.clear()
        assert browser_client.get(path).headers["location"] == "/console/sign-in"


def test_pages_that_can_change_say_so_and_load_only_the_services_script(
    browser_client: TestClient, tenancy: Tenancy
) -> None:
    queued = tenancy.call(user_id="live-user").id
    ended = tenancy.call(status=CallStatus.COMPLETED, user_id="ended-user").id
    sign_in(browser_client, tenancy.key)
    # The log's first page looks again every 2 s (10 s once all it shows has ended)
    log = browser_client.get("/console?user_id=live-user")
    assert '<main data-live-every="2000" data-live-idle="10000">' in log.text
    assert f'<tr id="call-{queued}" data-final="0">' in log.text
    ended_log = browser_client.get("/console?user_id=ended-user").text
    assert f'<tr id="call-{ended}" data-final="1">' in ended_log
    # A later page never shows new calls, so it does not look while idle
    _, cursor = list_calls(tenancy.engine, tenancy.tenant, LogFilter(), None, 1)
    assert cursor is not None
    later = browser_client.get("/console", params={"cursor": cursor}).text
    assert '<main data-live-every="2000">' in later
    # A call's page marks its status as unfinished or ended
    assert (
        'id="summary" data-live-part data-final="0"'
        in browser_client.get(f"/console/calls/{queued}").text
    )
    assert 'data-final="1"' in browser_client.get(f"/console/calls/{ended}").text
    # The script is the service's own, and the policy allows no other (nor inline) script
    assert '<script src="/console/live.js" defer></script>' in log.text
    policy = log.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "connect-src 'self';" in policy
    assert "unsafe-inline" not in policy
    script = browser_client.get("/console/live.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"  # run only as what it is
    assert "data-live-part" in script.text
    # Pages that never change by themselves load no script
    assert "<script" not in browser_client.get("/console/accounts").text


def test_signing_in_while_key_lookups_are_busy_is_a_503_page_with_retry_after(
    console_app: FastAPI, browser_client: TestClient
) -> None:
    auth = console_app.state.auth
    kept = auth._lookups
    auth._lookups = KeyLookups(console_app.state.engine, slots=0, queue=0)
    try:
        token = csrf_of(browser_client.get("/console/sign-in").text)
        refused = browser_client.post(
            "/console/sign-in", data={"api_key": "pt_" + "n" * 43, "csrf_token": token}
        )
    finally:
        auth._lookups = kept
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "<strong>Authorization</strong>" in refused.text


def test_the_database_down_is_a_503_page_with_retry_after(
    console_app: FastAPI, browser_client: TestClient, tenancy: Tenancy, tmp_path: Path
) -> None:
    sign_in(browser_client, tenancy.key)
    working = console_app.state.engine
    console_app.state.engine = create_engine(f"sqlite:///{tmp_path}/no/such/dir/passthru.db")
    try:
        pages = [browser_client.get(path) for path in ("/console", "/console/accounts")]
    finally:
        console_app.state.engine = working
    for page in pages:
        assert page.status_code == 503
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["retry-after"]
        assert "the database is unavailable; retry shortly" in page.text
    assert browser_client.get("/console").status_code == 200


def test_one_key_holds_a_bounded_number_of_sessions(redis_server: object) -> None:
    # Given a store that keeps at most 3 sessions per API key
    client = redis.Redis.from_url(redis_server.url)  # type: ignore[attr-defined]
    now = [1_000.0]
    store = SessionStore(client, ttl_s=60, max_per_key=3, clock=lambda: now[0])
    key, other = "a" * 64, "b" * 64
    # When one key signs in five times, a second per sign-in, and another key once
    tokens = []
    for _ in range(5):
        tokens.append(store.open(key))
        now[0] += 1
    theirs = store.open(other)
    # Then the key's two oldest sessions are closed, its three newest and the other's open
    assert [store.key_hash(t) for t in tokens] == [None, None, key, key, key]
    assert store.key_hash(theirs) == other
    assert client.zcard(f"passthru:console-sessions-of:{key}") == 3
    held = [client.get(k) for k in client.scan_iter("passthru:console-session:*")]
    assert sorted(v for v in held if v in (key.encode(), other.encode())) == [
        *[key.encode()] * 3,
        other.encode(),
    ]
    # ... and once they expire, the index forgets them at the next sign-in
    now[0] += 120
    latest = store.open(key)
    assert client.zrange(f"passthru:console-sessions-of:{key}", 0, -1) == [
        f"passthru:console-session:{hashlib.sha256(latest.encode()).hexdigest()}".encode()
    ]
    assert 0 < client.ttl(f"passthru:console-sessions-of:{key}") <= 60
    client.close()
