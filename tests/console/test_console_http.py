"""The console over HTTP: its cookies, its CSRF checks, what Redis keeps of a session, and
hostile input answered with a clear 4xx page."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator

import pytest
import redis
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

from api.console.sessions import PRESESSION_COOKIE, SESSION_COOKIE
from models.calls.states import CallStatus
from models.crypto.secrets import hash_api_key
from tests.api.conftest import stored_call
from tests.console.conftest import Tenancy

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html
    return found.group(1)


@pytest.fixture
def browser_client(console_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(console_app, follow_redirects=False) as client:
        yield client


def sign_in(client: TestClient, key: str, **headers: str) -> str:
    """Sign in with `key`; the signed-in page's CSRF token."""
    token = csrf_of(client.get("/console/sign-in", headers=headers).text)
    response = client.post(
        "/console/sign-in", data={"api_key": key, "csrf_token": token}, headers=headers
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/console").text)


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
            cookies = [form.headers["set-cookie"], response.headers.get_list("set-cookie")[0]]
            assert cookies[1].startswith(f"{SESSION_COOKIE}=")
            for cookie in cookies:
                assert "HttpOnly" in cookie
                assert "SameSite=strict" in cookie
                assert "Path=/console" in cookie
                assert ("Secure" in cookie) is secure, (base_url, headers, cookie)


def test_redis_keeps_neither_the_key_nor_the_session_token(
    browser_client: TestClient, tenancy: Tenancy, redis_server: object
) -> None:
    sign_in(browser_client, tenancy.key)
    token = browser_client.cookies[SESSION_COOKIE]
    client = redis.Redis.from_url(redis_server.url)  # type: ignore[attr-defined]
    stored = {k: client.get(k) for k in client.scan_iter("passthru:console-session:*")}
    client.close()
    assert hash_api_key(tenancy.key).encode() in stored.values()
    dump = b" ".join([*stored, *(v or b"" for v in stored.values())])
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
        ("user_id=" + "u" * 600, "user_id"),
        ("app=%3Cscript%3E", None),
        ("cursor=%27%3B--", None),
    ],
)
def test_hostile_query_strings_are_a_clear_4xx(
    browser_client: TestClient, tenancy: Tenancy, query: str, field: str | None
) -> None:
    sign_in(browser_client, tenancy.key)
    response = browser_client.get(f"/console?{query}")
    if field is None:
        assert response.status_code == 200
        assert "<script>" not in response.text.split("<main>")[1]
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
