"""Credential injection: each auth style puts the secret where the app expects it."""

from __future__ import annotations

import base64

import httpx
import pytest

from models.accounts.credentials import (
    ApiKeyCredentials,
    BasicCredentials,
    Credentials,
    OAuth2Credentials,
)
from models.catalog.spec import AuthSpec
from models.errors import CredentialsError
from worker.calls.auth import HeaderAuth, QueryAuth, auth_for


def _send(auth: httpx.Auth, url: str = "https://api.example.com/v1/items?limit=2") -> httpx.Request:
    """Send one GET through `auth` and return the request the upstream saw."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        assert client.get(url, auth=auth).status_code == 200
    assert len(seen) == 1
    return seen[0]


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "credentials",
    [OAuth2Credentials(access_token="tok-123"), ApiKeyCredentials(api_key="tok-123")],
)
def test_bearer(credentials: Credentials) -> None:
    request = _send(auth_for(AuthSpec(type="bearer"), credentials))
    assert request.headers["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in str(request.url)


def test_header_with_prefix() -> None:
    spec = AuthSpec(type="header", name="Authorization", prefix="Token token=")
    request = _send(auth_for(spec, ApiKeyCredentials(api_key="k-1")))
    assert request.headers["Authorization"] == "Token token=k-1"


def test_header_without_prefix() -> None:
    spec = AuthSpec(type="header", name="X-API-Key")
    request = _send(auth_for(spec, ApiKeyCredentials(api_key="k-2")))
    assert request.headers["X-API-Key"] == "k-2"
    assert "authorization" not in request.headers


def test_header_replaces_a_caller_value() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    spec = AuthSpec(type="header", name="X-API-Key")
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.get(
            "https://api.example.com/",
            headers={"x-api-key": "caller-forged"},
            auth=auth_for(spec, ApiKeyCredentials(api_key="real")),
        )
    assert seen[0].headers.get_list("x-api-key") == ["real"]


def test_query_param() -> None:
    spec = AuthSpec(type="query", param="api_key")
    request = _send(auth_for(spec, ApiKeyCredentials(api_key="q-1")))
    assert request.url.params["api_key"] == "q-1"
    assert request.url.params["limit"] == "2"
    assert request.url.path == "/v1/items"
    assert "authorization" not in request.headers


def test_query_auth_replaces_caller_param_of_same_name() -> None:
    # Given a caller URL that already carries the auth parameter
    auth = QueryAuth("api_key", "real-key")
    # When sent
    request = _send(auth, "https://api.example.com/v1/items?api_key=forged&x=1")
    # Then only the stored secret reaches the upstream
    assert request.url.params.get_list("api_key") == ["real-key"]
    assert request.url.params["x"] == "1"


def test_basic_with_username_password() -> None:
    request = _send(auth_for(AuthSpec(type="basic"), BasicCredentials(username="u", password="p")))
    assert request.headers["Authorization"] == _basic("u", "p")


def test_basic_api_key_as_username() -> None:
    spec = AuthSpec(type="basic", api_key_as="username", api_key_pair="")
    request = _send(auth_for(spec, ApiKeyCredentials(api_key="key-u")))
    assert request.headers["Authorization"] == _basic("key-u", "")


def test_basic_api_key_as_password() -> None:
    spec = AuthSpec(type="basic", api_key_as="password", api_key_pair="X")
    request = _send(auth_for(spec, ApiKeyCredentials(api_key="key-p")))
    assert request.headers["Authorization"] == _basic("X", "key-p")


@pytest.mark.parametrize(
    "spec",
    [
        AuthSpec(type="bearer"),
        AuthSpec(type="header", name="X-Key"),
        AuthSpec(type="query", param="key"),
    ],
)
def test_username_password_need_basic_auth(spec: AuthSpec) -> None:
    with pytest.raises(CredentialsError):
        auth_for(spec, BasicCredentials(username="u", password="p"))


def test_header_auth_is_usable_alone() -> None:
    request = _send(HeaderAuth("X-Token", "abc"))
    assert request.headers["X-Token"] == "abc"
