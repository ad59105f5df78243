"""The client credentials grant through the real worker: a token fetched once with the
account's own client, reused, and renewed after the upstream answers 401."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.e2e.conftest import Caller, Stack
from tests.e2e.upstream import ClientCredentialsApi

# `once` (SQLite pass only): fetching, reusing and renewing the token is the worker's; storing it
# and `needs_reauth` run on Postgres in tests/worker/test_client_credentials.py.
pytestmark = pytest.mark.once

API = ClientCredentialsApi
CLIENT = {
    "type": "client_credentials",
    "client_id": API.CLIENT_ID,
    "client_secret": API.CLIENT_SECRET,
}


def _items(caller: Caller, user: str) -> dict[str, object]:
    r = caller.http.post(
        "/ccapp-passthrough-request",
        json={"method": "GET", "url": "items"},
        headers={"X-User-ID": user},
    )
    assert r.status_code == 202, r.text
    return caller.wait(str(r.json()["id"]))


def test_a_token_is_fetched_once_reused_and_renewed_after_a_401(
    stack: Stack, caller: Caller
) -> None:
    api = stack.upstream.client_credentials
    asked = len(stack.upstream.requests_to(API.TOKEN_PATH))
    issued = len(api.issued)
    # Given an account holding its company's client id and secret
    account = caller.connect("ccapp", "u-cc", CLIENT)
    assert API.CLIENT_SECRET not in str(account)

    # When a first call is made / Then a token is fetched for it, and the call carries it
    first = _items(caller, "u-cc")
    assert (first["status"], first["network_code"]) == ("completed", "200")
    assert len(stack.upstream.requests_to(API.TOKEN_PATH)) - asked == 1
    token_1 = api.issued[issued]
    assert stack.upstream.requests_to(API.ITEMS_PATH)[-1].headers["authorization"] == (
        f"Bearer {token_1}"
    )

    # When a second call is made / Then the same token goes, with no new question
    second = _items(caller, "u-cc")
    assert second["network_code"] == "200"
    assert len(stack.upstream.requests_to(API.TOKEN_PATH)) - asked == 1
    assert stack.upstream.requests_to(API.ITEMS_PATH)[-1].headers["authorization"] == (
        f"Bearer {token_1}"
    )

    # When the upstream stops taking that token
    api.revoke_all()
    third = _items(caller, "u-cc")
    # Then the call met a 401, one new token was fetched, and the call went again with it
    assert (third["status"], third["network_code"]) == ("completed", "200")
    assert len(stack.upstream.requests_to(API.TOKEN_PATH)) - asked == 2
    token_2 = api.issued[-1]
    assert token_2 != token_1
    assert [a["network_code"] for a in third["attempts"]] == ["401", "200"]  # type: ignore[index]
    assert stack.upstream.requests_to(API.ITEMS_PATH)[-1].headers["authorization"] == (
        f"Bearer {token_2}"
    )

    # And neither the secret nor a token is stored in clear, shown, or logged
    with stack.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT credentials_enc FROM connected_account WHERE id = :id"),
            {"id": account["id"]},
        ).scalar_one()
    listed = caller.http.get("/connected-accounts", params={"user_id": "u-cc"}).text
    for secret in (API.CLIENT_SECRET, token_1, token_2):
        assert secret not in stored
        assert secret not in listed
        assert secret not in str([first, second, third])
    assert API.CLIENT_SECRET not in stack.all_logs()
