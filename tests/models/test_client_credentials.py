"""Apps of the client credentials grant: their catalog entry checked, and the credentials
an account of theirs takes (its own client id and secret), refused for every other app."""

from __future__ import annotations

from typing import Any

import pytest

from models.accounts.credentials import (
    MAX_CLIENT_ID_CHARS,
    MAX_SECRET_CHARS,
    ClientCredentials,
    ClientToken,
    OAuth2Credentials,
    load_credentials,
    parse_credentials,
)
from models.catalog.apps import App, Catalog, parse_catalog, with_oauth_clients
from models.errors import ApiError, ConfigError

TOKEN_URL = "https://api.x.example/oauth/token"


def _app(slug: str = "cc-app", **oauth2: Any) -> App:
    entry = {
        "name": "X",
        "base_url": "https://api.x.example",
        "allowed_hosts": ["api.x.example"],
        "auth": {"type": "bearer"},
        "oauth2": {"token_url": TOKEN_URL, **oauth2},
    }
    return parse_catalog({slug: entry}, "test")[slug]


CC_APP = _app(grant="client_credentials", scopes=["read", "write"])
CODE_APP = _app("code-app")
CLIENT = {"type": "client_credentials", "client_id": "cid", "client_secret": "s3cret"}


# --- the catalog entry --------------------------------------------------------------------


def test_the_grant_is_authorization_code_unless_the_entry_says_otherwise() -> None:
    assert CODE_APP.oauth2 is not None
    assert CODE_APP.oauth2.grant == "authorization_code"
    assert not CODE_APP.oauth2.client_credentials
    assert CC_APP.oauth2 is not None
    assert CC_APP.oauth2.client_credentials
    assert CC_APP.public()["oauth2"]["grant"] == "client_credentials"


@pytest.mark.parametrize(
    "extra",
    [
        {"authorize_url": "https://api.x.example/authorize"},
        {"pkce": True},
        {"authorize_params": {"prompt": "consent"}},
        {"client_id": "operator-id"},
        {"client_secret": "operator-secret"},
    ],
    ids=lambda e: next(iter(e)),
)
def test_a_client_credentials_entry_refuses_what_only_authorizing_needs(
    extra: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError, match="grant client_credentials takes no"):
        _app(grant="client_credentials", **extra)
    # while an authorization-code entry takes them
    assert _app(**extra).oauth2 is not None


def test_an_unknown_grant_is_refused() -> None:
    with pytest.raises(ConfigError, match="grant"):
        _app(grant="password")


def test_the_operator_cannot_give_a_client_credentials_app_a_client() -> None:
    with pytest.raises(ConfigError, match="client_credentials grant"):
        with_oauth_clients(
            Catalog({"cc-app": CC_APP}), {"cc-app": {"client_id": "i", "client_secret": "s"}}
        )


def test_only_client_credentials_apps_take_client_credentials() -> None:
    assert CC_APP.credential_kinds == {"client_credentials"}
    assert CC_APP.public()["credentials"] == ["client_credentials"]
    assert CODE_APP.credential_kinds == {"oauth2"}
    bearer = parse_catalog(
        {
            "b": {
                "name": "B",
                "base_url": "https://b.example",
                "allowed_hosts": ["b.example"],
                "auth": {"type": "bearer"},
            }
        },
        "test",
    )["b"]
    assert "client_credentials" not in bearer.credential_kinds


# --- an account's credentials -------------------------------------------------------------


def test_an_accounts_own_client_is_accepted_and_stored_without_a_token() -> None:
    creds = parse_credentials(CC_APP, CLIENT)
    assert isinstance(creds, ClientCredentials)
    assert creds.model_dump(exclude_none=True) == CLIENT
    # and read back from storage it is the client, with no token fetched yet
    stored = load_credentials(creds.model_dump(exclude_none=True))
    assert isinstance(stored, ClientToken)
    assert (stored.client_id, stored.client_secret, stored.access_token) == ("cid", "s3cret", None)
    # and neither the secret nor a token shows in its repr
    with_token = ClientToken.model_construct(**CLIENT, access_token="tok-9")
    assert "s3cret" not in repr(creds)
    assert "s3cret" not in repr(with_token)
    assert "tok-9" not in repr(with_token)


def _details(app: App, raw: Any) -> list[tuple[str, str]]:
    with pytest.raises(ApiError) as info:
        parse_credentials(app, raw)
    assert info.value.status_code == 400
    return [(d.field, d.message) for d in info.value.details]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"type": "client_credentials", "client_secret": "s"}, "credentials.client_id"),
        ({"type": "client_credentials", "client_id": "c"}, "credentials.client_secret"),
        ({**CLIENT, "client_id": ""}, "credentials.client_id"),
        ({**CLIENT, "client_secret": ""}, "credentials.client_secret"),
        ({**CLIENT, "client_id": "c" * (MAX_CLIENT_ID_CHARS + 1)}, "credentials.client_id"),
        (
            {**CLIENT, "client_secret": "s" * (MAX_SECRET_CHARS + 1)},
            "credentials.client_secret",
        ),
        ({**CLIENT, "client_secret": "line\nbreak"}, "credentials.client_secret"),
        ({**CLIENT, "client_id": 7}, "credentials.client_id"),
        # a token is passthru's to fetch, never the tenant's to give
        ({**CLIENT, "access_token": "t"}, "credentials.access_token"),
        ({**CLIENT, "expires_at": 1}, "credentials.expires_at"),
    ],
)
def test_a_bad_client_is_a_400_naming_the_field(raw: dict[str, Any], field: str) -> None:
    details = _details(CC_APP, raw)
    assert field in [f for f, _ in details]
    # and the message never quotes the secret
    assert not any("s3cret" in m or "line\nbreak" in m for _, m in details)


@pytest.mark.parametrize(
    "raw",
    [
        {"access_token": "t"},
        {"api_key": "k"},
        {"client_id": "cid", "client_secret": "s"},  # no type
        {"type": "something-else", "client_id": "cid", "client_secret": "s"},
    ],
)
def test_a_client_credentials_app_takes_nothing_else(raw: dict[str, Any]) -> None:
    [(field, message)] = _details(CC_APP, raw)
    assert field == "credentials"
    assert '{type: "client_credentials", client_id, client_secret}' in message


def test_client_credentials_are_refused_by_other_apps() -> None:
    [(field, message)] = _details(CODE_APP, CLIENT)
    assert field == "credentials"
    assert "{access_token" in message
    assert isinstance(parse_credentials(CODE_APP, {"access_token": "t"}), OAuth2Credentials)
