"""The console's connected accounts: how each was connected, and connect links made from
the accounts page as `POST /connect-sessions` makes them (its checks, CSRF, tenancy)."""

from __future__ import annotations

import re

from markupsafe import escape
from sqlalchemy import Engine, update
from sqlmodel import Session, col

from api.connect.sessions import digest
from models.accounts.states import AccountStatus
from models.db.engine import session_scope
from models.db.tables import ConnectedAccount, ConnectSession
from tests.console.conftest import Tenancy, TestClient, sign_in

LINK = re.compile(r'<a class="link-url" href="([^"]+)">')


def _make(client: TestClient, csrf: str, **form: str) -> str:
    """The answer to the form: `status page`."""
    response = client.post("/console/accounts/connect-link", data={"csrf_token": csrf, **form})
    return f"{response.status_code} {response.text}"


def test_the_accounts_page_says_how_each_account_was_connected(
    browser_client: TestClient, tenancy: Tenancy, engine: Engine
) -> None:
    sign_in(browser_client, tenancy.key)
    page = browser_client.get("/console/accounts").text
    assert '<th scope="col">Connected</th>' in page
    assert '<td data-label="Connected">API</td>' in page
    with session_scope(engine) as db:
        db.exec(
            update(ConnectedAccount)
            .where(col(ConnectedAccount.id) == tenancy.account.id)
            .values(source="connect_page")
        )
    page = browser_client.get("/console/accounts").text
    assert '<td data-label="Connected">connect page</td>' in page


def test_a_connect_link_is_made_for_the_signed_in_tenant_and_shown_once(
    browser_client: TestClient, tenancy: Tenancy, engine: Engine
) -> None:
    csrf = sign_in(browser_client, tenancy.key)
    page = _make(
        browser_client, csrf, app="hunter", user_id="u-link", redirect_url="https://t.test/back"
    )
    assert page.startswith("200 ")
    found = LINK.search(page)
    assert found, page
    url = found.group(1)
    assert url.startswith("http://127.0.0.1:8000/connect/")
    with Session(engine) as db:
        made = db.exec(
            ConnectSession.__table__.select().where(  # type: ignore[attr-defined]
                ConnectSession.__table__.c.token_hash == digest(url.rsplit("/", 1)[1])  # type: ignore[attr-defined]
            )
        ).one()
    assert (made.tenant_id, made.user_id, made.app) == (tenancy.tenant.id, "u-link", "hunter")
    # The page shown next does not show it again
    assert not LINK.search(browser_client.get("/console/accounts").text)


def test_a_reconnect_link_is_offered_for_an_account_that_needs_reauth(
    browser_client: TestClient, tenancy: Tenancy, engine: Engine
) -> None:
    with session_scope(engine) as db:
        db.exec(
            update(ConnectedAccount)
            .where(col(ConnectedAccount.id) == tenancy.account.id)
            .values(status=AccountStatus.NEEDS_REAUTH)
        )
    sign_in(browser_client, tenancy.key)
    page = browser_client.get("/console/accounts").text
    assert f'aria-label="Reconnect link for {tenancy.account.id}"' in page


def test_the_links_refusals_are_the_apis_and_csrf_is_checked(
    browser_client: TestClient, tenancy: Tenancy
) -> None:
    csrf = sign_in(browser_client, tenancy.key)
    refused = _make(
        browser_client, csrf, app="hunter", user_id="u", redirect_url="http://evil.test/"
    )
    assert refused.startswith("400 ")
    assert "redirect_url" in refused
    assert str(escape("must be https")) in refused
    assert "400 " in _make(
        browser_client, csrf, app="nope", user_id="u", redirect_url="https://t.test/"
    )
    too_long = _make(
        browser_client, csrf, app="hunter", user_id="u" * 201, redirect_url="https://t.test/"
    )
    assert "user_id" in too_long
    assert (
        _make(browser_client, "forged", app="hunter", user_id="u", redirect_url="https://t.test/")
    ).startswith("403 ")
