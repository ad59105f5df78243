"""Credentials objects: each shape accepted for a fitting app, anything else is a 400."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from models.accounts.credentials import (
    ApiKeyCredentials,
    BasicCredentials,
    OAuth2Credentials,
    load_credentials,
    parse_credentials,
)
from models.catalog.apps import App, parse_catalog
from models.errors import ApiError

_BASE = {"name": "X", "base_url": "https://api.x.example", "allowed_hosts": ["api.x.example"]}


def _app(slug: str, **extra: Any) -> App:
    return parse_catalog({slug: {**_BASE, **extra}}, "test")[slug]


OAUTH_APP = _app(
    "oauth-app", auth={"type": "bearer"}, oauth2={"token_url": "https://api.x.example/t"}
)
BEARER_APP = _app("bearer-app", auth={"type": "bearer"})
HEADER_APP = _app("header-app", auth={"type": "header", "name": "X-Key"})
QUERY_APP = _app("query-app", auth={"type": "query", "param": "key"})
BASIC_APP = _app("basic-app", auth={"type": "basic"})
BASIC_KEY_APP = _app("basic-key-app", auth={"type": "basic", "api_key_as": "username"})


def _assert_credentials_error(err: ApiError) -> None:
    assert err.status_code == 400
    assert err.details
    assert all(d.field.startswith("credentials") for d in err.details)
    body = err.body()
    assert set(body) == {"error", "error_details"}


@pytest.mark.parametrize(
    ("app", "raw", "model"),
    [
        (OAUTH_APP, {"access_token": "at"}, OAuth2Credentials),
        (
            OAUTH_APP,
            {"access_token": "at", "refresh_token": "rt", "expires_at": 1},
            OAuth2Credentials,
        ),
        (BEARER_APP, {"access_token": "at"}, OAuth2Credentials),
        (BEARER_APP, {"api_key": "k"}, ApiKeyCredentials),
        (HEADER_APP, {"api_key": "k"}, ApiKeyCredentials),
        (QUERY_APP, {"api_key": "k"}, ApiKeyCredentials),
        (BASIC_APP, {"username": "u", "password": "p"}, BasicCredentials),
        (BASIC_APP, {"username": "u", "password": ""}, BasicCredentials),
        (BASIC_KEY_APP, {"api_key": "k"}, ApiKeyCredentials),
        (BASIC_KEY_APP, {"username": "u", "password": "p"}, BasicCredentials),
    ],
)
def test_fitting_shape_is_accepted(app: App, raw: dict[str, Any], model: type) -> None:
    creds = parse_credentials(app, raw)
    assert isinstance(creds, model)
    # and what is stored can be rebuilt as the same object
    assert load_credentials(creds.model_dump(exclude_none=True)) == creds


@pytest.mark.parametrize(
    ("app", "raw"),
    [
        (OAUTH_APP, {"api_key": "k"}),
        (OAUTH_APP, {"username": "u", "password": "p"}),
        (HEADER_APP, {"access_token": "at"}),
        (QUERY_APP, {"username": "u", "password": "p"}),
        (BASIC_APP, {"api_key": "k"}),
        (BASIC_APP, {"access_token": "at"}),
        (BEARER_APP, {}),
        (BEARER_APP, {"token": "t"}),
        (BEARER_APP, "a-string"),
        (BEARER_APP, ["api_key"]),
        (BEARER_APP, None),
    ],
)
def test_wrong_shape_is_a_400_on_credentials(app: App, raw: Any) -> None:
    with pytest.raises(ApiError) as err:
        parse_credentials(app, raw)
    _assert_credentials_error(err.value)
    assert err.value.details[0].field == "credentials"


@pytest.mark.parametrize(
    ("app", "raw"),
    [
        (BEARER_APP, {"api_key": ""}),
        (BEARER_APP, {"api_key": "k", "extra": 1}),
        (OAUTH_APP, {"access_token": ""}),
        (OAUTH_APP, {"access_token": "at", "expires_at": "not a date"}),
        (BASIC_APP, {"username": "u"}),
        (BASIC_APP, {"username": "", "password": "p"}),
    ],
)
def test_right_kind_with_bad_fields_is_a_400(app: App, raw: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as err:
        parse_credentials(app, raw)
    _assert_credentials_error(err.value)


def test_error_message_names_the_expected_shape() -> None:
    with pytest.raises(ApiError) as err:
        parse_credentials(BASIC_APP, {"api_key": "k"})
    assert "{username, password}" in err.value.details[0].message


@pytest.mark.parametrize(
    "expires_at",
    ["2030-01-02T03:04:05Z", "2030-01-02T03:04:05+00:00", "2030-01-02T04:04:05+01:00"],
)
def test_expires_at_iso_string_becomes_epoch_seconds(expires_at: str) -> None:
    creds = parse_credentials(OAUTH_APP, {"access_token": "at", "expires_at": expires_at})
    assert isinstance(creds, OAuth2Credentials)
    assert creds.expires_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("expires_at", [1893553445, 1893553445.5])
def test_expires_at_epoch_is_kept(expires_at: float) -> None:
    creds = parse_credentials(OAUTH_APP, {"access_token": "at", "expires_at": expires_at})
    assert isinstance(creds, OAuth2Credentials)
    assert creds.expires_at == expires_at
