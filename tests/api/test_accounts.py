"""Connected accounts (`/connected-accounts`): created, listed, changed and deleted per
tenant, their secrets never shown; templated hosts; an account's status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col

from models.catalog.apps import App, Catalog
from models.crypto.secrets import Vault
from models.db.engine import session_scope
from models.db.tables import ConnectedAccount
from tests.api.conftest import CALL, Caller, submit
from tests.api.test_errors import assert_error_shape

SECRET = "xoxb-very-secret-token-42"


def test_account_create_never_echoes_the_secret(
    caller: Caller, engine: Engine, vault: Vault
) -> None:
    # When an account is connected
    response = caller.client.post(
        "/connected-accounts",
        json={"app": "slack", "credentials": {"access_token": SECRET, "refresh_token": "r-1"}},
        headers=caller.headers("user-9"),
    )
    # Then 201 with the account, and the secret is nowhere in the answer
    assert response.status_code == 201, response.text
    body = response.json()
    assert {"id", "app", "user_id", "status", "created_at"} <= set(body)
    assert body["app"] == "slack"
    assert body["user_id"] == "user-9"
    assert body["status"] == "active"
    assert SECRET not in response.text
    assert "r-1" not in response.text
    assert "credentials" not in body
    # and it is stored encrypted
    with Session(engine) as session:
        row = session.get(ConnectedAccount, body["id"])
        assert row is not None
        assert SECRET not in row.credentials_enc
        assert vault.decrypt(row.credentials_enc, bound_to=row.id)["access_token"] == SECRET


def test_account_list_delete(caller: Caller) -> None:
    # Given two accounts
    slack = caller.connect(app="slack", user="u-a", token=SECRET)
    pipedrive = caller.connect(app="pipedrive", user="u-b")
    # When listed / Then both are there, without secrets, and filters work
    listed = caller.client.get("/connected-accounts", headers=caller.headers())
    assert listed.status_code == 200
    assert {a["id"] for a in listed.json()["items"]} == {slack, pipedrive}
    assert SECRET not in listed.text
    by_app = caller.client.get("/connected-accounts?app=pipedrive", headers=caller.headers())
    assert [a["id"] for a in by_app.json()["items"]] == [pipedrive]
    by_user = caller.client.get("/connected-accounts?user_id=u-a", headers=caller.headers())
    assert [a["id"] for a in by_user.json()["items"]] == [slack]
    # When one is deleted / Then it is gone
    deleted = caller.client.delete(f"/connected-accounts/{slack}", headers=caller.headers())
    assert deleted.status_code == 204
    assert deleted.content == b""
    again = caller.client.delete(f"/connected-accounts/{slack}", headers=caller.headers())
    assert again.status_code == 404
    assert_error_shape(again.json(), "not_found")
    listed = caller.client.get("/connected-accounts", headers=caller.headers())
    assert [a["id"] for a in listed.json()["items"]] == [pipedrive]


def test_accounts_are_per_tenant(caller: Caller, make_caller: Callable[[], Caller]) -> None:
    account_id = caller.connect()
    other = make_caller()
    assert other.client.get("/connected-accounts", headers=other.headers()).json() == {
        "items": [],
        "next_cursor": None,
    }
    response = other.client.delete(f"/connected-accounts/{account_id}", headers=other.headers())
    assert response.status_code == 404
    still = caller.client.get("/connected-accounts", headers=caller.headers()).json()["items"]
    assert [a["id"] for a in still] == [account_id]


@pytest.mark.parametrize(
    ("body", "user", "field"),
    [
        ({"app": "slack", "credentials": {"access_token": "t"}}, None, "X-User-ID"),
        ({"app": "slack", "credentials": {"api_key": "k"}}, "u", "credentials"),
        ({"app": "slack", "credentials": {"username": "u", "password": "p"}}, "u", "credentials"),
        ({"app": "no-such-app", "credentials": {"access_token": "t"}}, "u", "app"),
        ({"app": "slack"}, "u", "credentials"),
    ],
)
def test_account_create_errors_are_400(
    caller: Caller, body: dict[str, Any], user: str | None, field: str
) -> None:
    response = caller.client.post("/connected-accounts", json=body, headers=caller.headers(user))
    assert response.status_code == 400
    assert_error_shape(response.json())
    assert field in [d["field"] for d in response.json()["error_details"]]
    listed = caller.client.get("/connected-accounts", headers=caller.headers()).json()
    assert listed == {"items": [], "next_cursor": None}


def test_patch_account_replaces_credentials_and_keeps_them_hidden(
    caller: Caller, engine: Engine, vault: Vault
) -> None:
    account_id = caller.connect(token="old-token")
    response = caller.client.patch(
        f"/connected-accounts/{account_id}",
        json={"credentials": {"access_token": SECRET}},
        headers=caller.headers(),
    )
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    with Session(engine) as session:
        row = session.get(ConnectedAccount, account_id)
        assert row is not None
        assert vault.decrypt(row.credentials_enc, bound_to=row.id)["access_token"] == SECRET


# --- templated hosts ----------------------------------------------------------------------


def _templated_app(catalog: Catalog) -> tuple[str, str, dict[str, Any]]:
    """A catalog app whose hosts come from connection_config, with credentials that fit it."""
    apps: list[App] = [
        a for a in catalog if a.template_fields and any("{" in h for h in a.allowed_hosts)
    ]
    assert apps, "no templated app in the catalog"
    app = apps[0]
    kind = sorted(app.credential_kinds)[0]
    credentials = {
        "oauth2": {"access_token": "t"},
        "client_credentials": {
            "type": "client_credentials",
            "client_id": "i",
            "client_secret": "s",
        },
        "api_key": {"api_key": "k"},
        "basic": {"username": "u", "password": "p"},
    }[kind]
    return app.slug, app.template_fields[0], credentials


def _connect(
    caller: Caller, slug: str, credentials: dict[str, Any], config: dict[str, Any] | None
) -> httpx.Response:
    response: httpx.Response = caller.client.post(
        "/connected-accounts",
        json={"app": slug, "credentials": credentials, "connection_config": config},
        headers=caller.headers(),
    )
    return response


def test_templated_app_needs_a_safe_connection_config(caller: Caller, catalog: Catalog) -> None:
    slug, field, credentials = _templated_app(catalog)
    for config in (None, {field: "evil.com"}, {field: "a/b"}, {field: "x@y"}):
        response = _connect(caller, slug, credentials, config)
        assert response.status_code == 400, config
        assert response.json()["error_details"][0]["field"] == "connection_config"


def test_templated_app_calls_stay_on_the_accounts_own_host(
    caller: Caller, catalog: Catalog
) -> None:
    # Given an account on subdomain "acme" of a templated app
    slug, field, credentials = _templated_app(catalog)
    created = _connect(caller, slug, credentials, {field: "acme"})
    assert created.status_code == 201, created.text
    # When a relative URL is submitted / Then it resolves on the account's host
    ok = submit(caller, {"method": "GET", "url": "some/path"}, app=slug)
    assert ok.status_code == 202, ok.text
    assert "acme" in ok.json()["url"]
    # and an absolute URL on another customer's subdomain is refused
    other_url = ok.json()["url"].replace("acme", "othercustomer")
    refused = submit(caller, {"method": "GET", "url": other_url}, app=slug)
    assert refused.status_code == 400
    assert refused.json()["error_details"][0]["field"] == "url"


def test_connection_config_changes_only_with_new_credentials(
    caller: Caller, catalog: Catalog
) -> None:
    # Given an account on subdomain "acme" of a templated app
    slug, field, credentials = _templated_app(catalog)
    created = _connect(caller, slug, credentials, {field: "acme"})
    path = f"/connected-accounts/{created.json()['id']}"
    # When its config is changed alone
    alone = caller.client.patch(
        path, json={"connection_config": {field: "other"}}, headers=caller.headers()
    )
    # Then it is refused, and the account keeps its host
    assert alone.status_code == 400
    assert_error_shape(alone.json(), "invalid_params")
    assert alone.json()["error_details"][0]["field"] == "connection_config"
    listed = caller.client.get("/connected-accounts", headers=caller.headers()).json()["items"]
    assert listed[0]["connection_config"] == {field: "acme"}
    # And together with new credentials it changes
    both = caller.client.patch(
        path,
        json={"credentials": credentials, "connection_config": {field: "other"}},
        headers=caller.headers(),
    )
    assert both.status_code == 200, both.text
    assert both.json()["connection_config"] == {field: "other"}


# --- connected account status -------------------------------------------------------------


def test_a_disabled_account_refuses_calls_until_enabled(caller: Caller) -> None:
    account = caller.connect()
    off = caller.client.patch(
        f"/connected-accounts/{account}", json={"status": "disabled"}, headers=caller.headers()
    )
    assert off.status_code == 200, off.text
    assert off.json()["status"] == "disabled"
    refused = submit(caller, {**CALL, "connected_account_id": account})
    assert refused.status_code == 400
    assert refused.json()["error"] == "account_disabled"
    on = caller.client.patch(
        f"/connected-accounts/{account}", json={"status": "active"}, headers=caller.headers()
    )
    assert on.json()["status"] == "active"
    assert submit(caller, {**CALL, "connected_account_id": account}).status_code == 202


def test_needs_reauth_is_cleared_by_new_credentials_only(caller: Caller, engine: Engine) -> None:
    account = caller.connect()
    with session_scope(engine) as session:
        session.exec(
            update(ConnectedAccount)
            .where(col(ConnectedAccount.id) == account)
            .values(status="needs_reauth")
        )
    path, headers = f"/connected-accounts/{account}", caller.headers()
    # Config alone, or asking for "active", does not clear it
    still = caller.client.patch(path, json={"connection_config": None}, headers=headers)
    assert still.json()["status"] == "needs_reauth"
    asked = caller.client.patch(path, json={"status": "active"}, headers=headers)
    assert asked.status_code == 400
    assert_error_shape(asked.json(), "account_needs_reauth")
    # New credentials do
    fixed = caller.client.patch(
        path, json={"credentials": {"access_token": "xoxb-new"}}, headers=headers
    )
    assert fixed.json()["status"] == "active"


def _post_account(
    caller: Caller, credentials: dict[str, Any], user: str = "u-same", **extra: Any
) -> httpx.Response:
    return caller.client.post(
        "/connected-accounts",
        json={"app": extra.pop("app", "slack"), "credentials": credentials, **extra},
        headers=caller.headers(user),
    )


def test_identical_credentials_find_the_existing_account(caller: Caller) -> None:
    # Given an account connected with some credentials
    first = _post_account(caller, {"access_token": SECRET, "refresh_token": "r-1"})
    assert first.status_code == 201, first.text
    # When the same credentials are posted again (keys in another order)
    again = _post_account(caller, {"refresh_token": "r-1", "access_token": SECRET})
    # Then 200 with the same account, and no twin was made
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    listed = caller.client.get("/connected-accounts?user_id=u-same", headers=caller.headers())
    assert [a["id"] for a in listed.json()["items"]] == [first.json()["id"]]


@pytest.mark.parametrize(
    ("credentials", "user", "extra"),
    [
        ({"access_token": SECRET + "-2", "refresh_token": "r-1"}, "u-same", {}),
        ({"access_token": SECRET}, "u-same", {}),
        ({"access_token": SECRET, "refresh_token": "r-1"}, "u-other", {}),
    ],
)
def test_different_credentials_or_user_make_another_account(
    caller: Caller, credentials: dict[str, Any], user: str, extra: dict[str, Any]
) -> None:
    first = _post_account(caller, {"access_token": SECRET, "refresh_token": "r-1"})
    other = _post_account(caller, credentials, user, **extra)
    assert other.status_code == 201, other.text
    assert other.json()["id"] != first.json()["id"]


def test_identical_credentials_of_another_tenant_are_another_account(
    caller: Caller, make_caller: Callable[[], Caller]
) -> None:
    first = _post_account(caller, {"access_token": SECRET})
    other = _post_account(make_caller(), {"access_token": SECRET})
    assert other.status_code == 201, other.text
    assert other.json()["id"] != first.json()["id"]


def test_another_connection_config_is_another_account(caller: Caller) -> None:
    creds = {"access_token": SECRET}
    first = _post_account(caller, creds, app="zendesk", connection_config={"subdomain": "a"})
    same = _post_account(caller, creds, app="zendesk", connection_config={"subdomain": "a"})
    other = _post_account(caller, creds, app="zendesk", connection_config={"subdomain": "b"})
    assert (first.status_code, same.status_code, other.status_code) == (201, 200, 201)
    assert same.json()["id"] == first.json()["id"] != other.json()["id"]
