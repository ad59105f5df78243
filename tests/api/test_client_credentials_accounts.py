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
