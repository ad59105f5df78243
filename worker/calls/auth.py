"""Credential injection as httpx.Auth classes: one per auth style, no I/O, testable alone;
and the secrets a request carries, for the scrubber."""

from __future__ import annotations

from collections.abc import Generator

import httpx

from models.accounts.credentials import (
    ApiKeyCredentials,
    BasicCredentials,
    ClientCredentials,
    ClientToken,
    Credentials,
    OAuth2Credentials,
)
from models.catalog.apps import App
from models.catalog.spec import AuthSpec
from models.errors import CredentialsError
from worker.calls.scrub import basic_pair


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


def _in_query(param: str, value: str) -> str:
    """`value` exactly as httpx writes it in a query string."""
    return str(httpx.URL("", params={param: value}).query, "ascii").split("=", 1)[1]


def _secret(credentials: Credentials) -> str:
    if isinstance(credentials, ApiKeyCredentials):
        return credentials.api_key
    if isinstance(credentials, BasicCredentials):
        raise CredentialsError("username/password credentials need basic auth")
    if isinstance(credentials, ClientCredentials):
        token = credentials.access_token if isinstance(credentials, ClientToken) else None
        if not token:
            raise CredentialsError("no access token was fetched for the account's client")
        return token
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


def secrets_of(app: App, credentials: Credentials) -> list[str]:
    """Every secret a call's request carries or its account holds, in the forms they travel
    in: what the scrubber must remove, whatever the upstream echoes."""
    spec = app.auth
    found: list[str] = []
    if isinstance(credentials, OAuth2Credentials):
        found += [credentials.access_token, credentials.refresh_token or ""]
    elif isinstance(credentials, ClientCredentials):
        found.append(credentials.client_secret)
        if isinstance(credentials, ClientToken):
            found.append(credentials.access_token or "")
    elif isinstance(credentials, ApiKeyCredentials):
        found.append(credentials.api_key)
    else:
        found.append(credentials.password)
        found += basic_pair(credentials.username, credentials.password)
    if spec.type == "basic" and not isinstance(credentials, BasicCredentials):
        key = _secret(credentials)
        user, password = (
            (spec.api_key_pair, key) if spec.api_key_as == "password" else (key, spec.api_key_pair)
        )
        found += basic_pair(user, password)
    if spec.type == "query" and spec.param:
        found += [_in_query(spec.param, s) for s in found if s]
    if app.oauth2 is not None and app.oauth2.client_secret is not None:
        found.append(app.oauth2.client_secret.get_secret_value())
    return [s for s in found if s]
