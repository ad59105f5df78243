"""Credential injection as httpx.Auth classes: one per auth style, no I/O, testable alone."""

from __future__ import annotations

from collections.abc import Generator

import httpx

from models.catalog import AuthSpec
from models.credentials import ApiKeyCredentials, BasicCredentials, Credentials
from models.errors import CredentialsError


class HeaderAuth(httpx.Auth):
    """`<name>: <prefix><secret>`; Bearer is this with `Authorization` and `Bearer `."""

    def __init__(self, name: str, value: str) -> None:
        self._name = name
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._name] = self._value
        yield request


class QueryAuth(httpx.Auth):
    """The secret as a query parameter, replacing any the caller sent."""

    def __init__(self, param: str, value: str) -> None:
        self._param = param
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.url = request.url.copy_set_param(self._param, self._value)
        yield request

    def scrub(self, text: str) -> str:
        """`text` (an error message that may quote the URL) without the secret."""
        encoded = str(httpx.URL("", params={self._param: self._value}).query, "ascii")
        secret_in_url = encoded.split("=", 1)[1]
        return text.replace(secret_in_url, "[redacted]").replace(self._value, "[redacted]")


def _secret(credentials: Credentials) -> str:
    if isinstance(credentials, ApiKeyCredentials):
        return credentials.api_key
    if isinstance(credentials, BasicCredentials):
        raise CredentialsError("username/password credentials need basic auth")
    return credentials.access_token


def auth_for(spec: AuthSpec, credentials: Credentials) -> httpx.Auth:
    """The httpx.Auth that puts `credentials` on a request the way `spec` says."""
    if spec.type == "basic":
        if isinstance(credentials, BasicCredentials):
            return httpx.BasicAuth(credentials.username, credentials.password)
        key = _secret(credentials)
        if spec.api_key_as == "password":
            return httpx.BasicAuth(spec.api_key_pair, key)
        return httpx.BasicAuth(key, spec.api_key_pair)
    secret = _secret(credentials)
    if spec.type == "bearer":
        return HeaderAuth("Authorization", f"Bearer {secret}")
    if spec.type == "header":
        assert spec.name is not None
        return HeaderAuth(spec.name, f"{spec.prefix}{secret}")
    assert spec.param is not None
    return QueryAuth(spec.param, secret)
