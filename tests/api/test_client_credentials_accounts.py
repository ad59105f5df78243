"""`/connected-accounts` for an app of the client credentials grant: the account's own client
id and secret are taken, checked, stored encrypted and never shown; `GET /apps` says which
credentials fit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from models.accounts.tenants import create_tenant
from models.crypto.secrets import Vault
from models.db.engine import session_scope
from models.db.tables import ConnectedAccount
from tests.api.conftest import Caller

SECRET = "cc-api-secret-0042"
CLIENT = {"type": "client_credentials", "client_id": "company-1", "client_secret": SECRET}
HR_APP = {
    "name": "HR",
    "base_url": "https://api.hr.example/v1",
    "allowed_hosts": ["api.hr.example"],
    "auth": {"type": "bearer"},
    "oauth2": {"grant": "client_credentials", "token_url": "https://api.hr.example/oauth/token"},
}


@pytest.fixture
def cc_caller(make_app: Callable[..., FastAPI], engine: Engine, tmp_path: Path) -> Caller:
    apps_file = tmp_path / "apps.yaml"
    apps_file.write_text(yaml.safe_dump({"hr": HR_APP}))
    client = TestClient(make_app(apps_file=apps_file))
    tenant, key = create_tenant(engine, "cc-tenant")
    return Caller(client, tenant, key)


def test_the_app_lists_client_credentials_as_what_fits(cc_caller: Caller) -> None:
    app = cc_caller.client.get("/apps/hr", headers=cc_caller.headers()).json()
    assert app["credentials"] == ["client_credentials"]
    assert app["oauth2"]["grant"] == "client_credentials"


def test_a_client_is_stored_encrypted_and_never_shown(
    cc_caller: Caller, engine: Engine, vault: Vault
) -> None:
    created = cc_caller.client.post(
        "/connected-accounts",
        json={"app": "hr", "credentials": CLIENT},
        headers=cc_caller.headers(),
    )
    assert created.status_code == 201, created.text
    assert SECRET not in created.text
    listed = cc_caller.client.get("/connected-accounts", headers=cc_caller.headers())
    assert SECRET not in listed.text
    with Session(engine) as session:
        row = session.get(ConnectedAccount, created.json()["id"])
        assert row is not None
        assert SECRET not in row.credentials_enc
        assert vault.decrypt(row.credentials_enc, bound_to=row.id) == CLIENT


def test_the_same_client_posted_again_finds_its_account_after_a_token_was_fetched(
    cc_caller: Caller, engine: Engine, vault: Vault
) -> None:
    # Given a client's account for which passthru has since fetched and kept a token
    post = {"json": {"app": "hr", "credentials": CLIENT}, "headers": cc_caller.headers()}
    created = cc_caller.client.post("/connected-accounts", **post)
    assert created.status_code == 201, created.text
    with session_scope(engine) as session:
        row = session.get(ConnectedAccount, created.json()["id"])
        assert row is not None
        kept = {**CLIENT, "access_token": "fetched-1", "expires_at": 2e9, "refreshed_at": 1.7e9}
        row.credentials_enc = vault.encrypt(kept, bound_to=row.id)
    # When the tenant posts the same client again / Then it is that account (200), no twin
    again = cc_caller.client.post("/connected-accounts", **post)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == created.json()["id"]


@pytest.mark.parametrize(
    ("credentials", "field"),
    [
        ({"access_token": "t"}, "credentials"),
        ({"type": "client_credentials", "client_id": "c"}, "credentials.client_secret"),
        ({**CLIENT, "client_secret": "x" * 20_000}, "credentials.client_secret"),
        ({**CLIENT, "access_token": "t"}, "credentials.access_token"),
    ],
)
def test_a_bad_client_is_a_400_that_never_quotes_it(
    cc_caller: Caller, credentials: dict[str, object], field: str
) -> None:
    response = cc_caller.client.post(
        "/connected-accounts",
        json={"app": "hr", "credentials": credentials},
        headers=cc_caller.headers(),
    )
    assert response.status_code == 400
    assert field in [d["field"] for d in response.json()["error_details"]]
    assert SECRET not in response.text
    assert "xxxxxxxx" not in response.text


def test_another_app_refuses_a_client(caller: Caller) -> None:
    response = caller.client.post(
        "/connected-accounts",
        json={"app": "slack", "credentials": CLIENT},
        headers=caller.headers(),
    )
    assert response.status_code == 400
    assert SECRET not in response.text
