"""The HTTP API, through the app: submitting, reading, cancelling calls; accounts; functions."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col

from models.calls.states import CallStatus
from models.catalog.apps import App, Catalog
from models.crypto.secrets import Vault
from models.db.engine import session_scope, utcnow
from models.db.tables import ConnectedAccount, FunctionCall
from tests.api.conftest import Caller, PublishedIds
from tests.api.test_errors import assert_error_shape

SECRET = "xoxb-very-secret-token-42"
CALL = {"method": "GET", "url": "conversations.list?limit=2"}


def submit(
    caller: Caller,
    body: dict[str, Any] | None = None,
    app: str = "slack",
    user: str | None = "user-1",
    idempotency_key: str | None = None,
    prefer: str | None = None,
) -> httpx.Response:
    extra = {}
    if idempotency_key is not None:
        extra["Idempotency-Key"] = idempotency_key
    if prefer is not None:
        extra["Prefer"] = prefer
    response: httpx.Response = caller.client.post(
        f"/{app}-passthrough-request", json=body or CALL, headers=caller.headers(user, **extra)
    )
    return response


def log(caller: Caller, query: str = "") -> dict[str, Any]:
    response = caller.client.get(f"/function-calls{query}", headers=caller.headers())
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


# --- submitting -----------------------------------------------------------------------------


def test_valid_call_is_queued_and_published(caller: Caller, published: PublishedIds) -> None:
    # Given a user with a Slack account
    account_id = caller.connect()
    # When the tenant submits a call for them
    response = submit(caller)
    # Then it is accepted, queued, and its id handed to the broker
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["function"] == "slack-passthrough-request"
    assert body["app"] == "slack"
    assert body["method"] == "GET"
    assert body["url"] == "https://slack.com/api/conversations.list?limit=2"
    assert body["connected_account_id"] == account_id
    assert body["user_id"] == "user-1"
    assert body["network_code"] is None
    assert published.ids == [body["id"]]
    # and it can be read back
    got = caller.client.get(f"/function-calls/{body['id']}", headers=caller.headers())
    assert got.status_code == 200
    assert got.json()["status"] == "queued"
    assert got.json()["attempts"] == []


def test_sdk_form_is_accepted(caller: Caller, published: PublishedIds) -> None:
    caller.connect()
    response = caller.client.post(
        "/function-calls",
        json={
            "function": "slack-passthrough-request",
            "params": {
                "method": "post",
                "url": "https://slack.com/api/chat.postMessage",
                "body": {"channel": "C1", "text": "hi"},
            },
        },
        headers=caller.headers(),
    )
    assert response.status_code == 202, response.text
    assert response.json()["method"] == "POST"
    assert published.ids == [response.json()["id"]]


def test_call_names_account_by_id(caller: Caller) -> None:
    caller.connect(user="user-1")
    second = caller.connect(user="user-1", token="another")
    response = caller.client.post(
        "/slack-passthrough-request",
        json={**CALL, "connected_account_id": second},
        headers=caller.headers(user=None),
    )
    assert response.status_code == 202, response.text
    assert response.json()["connected_account_id"] == second


def test_unknown_app_is_404(caller: Caller) -> None:
    response = submit(caller, app="no-such-app")
    assert response.status_code == 404
    assert_error_shape(response.json(), "unknown_app")
    sdk = caller.client.post(
        "/function-calls",
        json={"function": "no-such-app-passthrough-request", "params": CALL},
        headers=caller.headers(),
    )
    assert sdk.status_code == 404
    assert_error_shape(sdk.json(), "unknown_app")


def test_malformed_function_name_is_400(caller: Caller) -> None:
    response = caller.client.post(
        "/function-calls", json={"function": "slack", "params": CALL}, headers=caller.headers()
    )
    assert response.status_code == 400
    assert response.json()["error_details"][0]["field"] == "function"


def test_no_connected_account_is_400(caller: Caller) -> None:
    response = submit(caller, user="user-without-account")
    assert response.status_code == 400
    assert_error_shape(response.json(), "no_connected_account")


def test_missing_user_is_400(caller: Caller) -> None:
    caller.connect()
    response = submit(caller, user=None)
    assert response.status_code == 400
    assert response.json()["error_details"][0]["field"] == "X-User-ID"


def test_account_of_another_app_is_400(caller: Caller) -> None:
    pipedrive = caller.connect(app="pipedrive")
    response = submit(caller, {**CALL, "connected_account_id": pipedrive})
    assert response.status_code == 400
    assert_error_shape(response.json(), "no_connected_account")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"method": "GET", "url": "https://evil.com/api/x"}, "url"),
        ({"method": "GET", "url": "http://slack.com/api/x"}, "url"),
        ({"method": "TRACE", "url": "x"}, "method"),
        (
            {"method": "GET", "url": "x", "headers": {"Authorization": "Bearer forged"}},
            "headers.Authorization",
        ),
        (
            {"method": "GET", "url": "x", "headers": {"authorization": "Bearer forged"}},
            "headers.authorization",
        ),
        ({"method": "GET", "url": "x", "callback_url": "not-a-url"}, "callback_url"),
    ],
)
def test_invalid_params_are_400_and_not_written(
    caller: Caller, published: PublishedIds, body: dict[str, Any], field: str
) -> None:
    # Given a user with an account
    caller.connect()
    # When the call is invalid
    response = submit(caller, body)
    # Then it is refused with the field named, and nothing is written or published
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_params")
    assert field in [d["field"] for d in response.json()["error_details"]]
    assert log(caller)["items"] == []
    assert published.ids == []


def test_rejected_calls_are_not_logged(caller: Caller, published: PublishedIds) -> None:
    # Given a mix of refusals: unknown app, no account, bad host, bad Prefer
    caller.connect()
    assert submit(caller, app="nope").status_code == 404
    assert submit(caller, user="nobody").status_code == 400
    assert submit(caller, {"method": "GET", "url": "https://evil.com/"}).status_code == 400
    assert submit(caller, prefer="wait=soon").status_code == 400
    # Then the log holds nothing for this tenant
    assert log(caller) == {"items": [], "next_cursor": None}
    assert published.ids == []


def test_another_tenants_call_is_404(caller: Caller, make_caller: Callable[[], Caller]) -> None:
    # Given a call of one tenant
    caller.connect()
    call_id = submit(caller).json()["id"]
    other = make_caller()
    # When another tenant asks for it, or to cancel it / Then it does not exist for them
    got = other.client.get(f"/function-calls/{call_id}", headers=other.headers())
    assert got.status_code == 404
    assert_error_shape(got.json(), "not_found")
    cancel = other.client.post(f"/function-calls/{call_id}/cancel", headers=other.headers())
    assert cancel.status_code == 404
    assert log(other)["items"] == []
    # and the owner still sees it queued
    assert (
        caller.client.get(f"/function-calls/{call_id}", headers=caller.headers()).json()["status"]
        == "queued"
    )


def test_another_tenants_account_cannot_be_used(
    caller: Caller, make_caller: Callable[[], Caller]
) -> None:
    account_id = caller.connect()
    other = make_caller()
    response = submit(other, {**CALL, "connected_account_id": account_id})
    assert response.status_code == 400
    assert_error_shape(response.json(), "no_connected_account")


# --- idempotency ----------------------------------------------------------------------------


def test_same_idempotency_key_and_body_returns_the_same_call(
    caller: Caller, published: PublishedIds
) -> None:
    caller.connect()
    first = submit(caller, idempotency_key="key-1")
    second = submit(caller, idempotency_key="key-1")
    assert first.status_code == 202
    assert second.status_code in (200, 202)
    assert second.json()["id"] == first.json()["id"]
    assert published.ids == [first.json()["id"]]
    assert len(log(caller)["items"]) == 1


def test_same_idempotency_key_with_other_body_is_409(caller: Caller) -> None:
    caller.connect()
    first = submit(caller, idempotency_key="key-2")
    other = submit(caller, {"method": "GET", "url": "users.list"}, idempotency_key="key-2")
    assert first.status_code == 202
    assert other.status_code == 409
    assert_error_shape(other.json(), "idempotency_conflict")
    assert len(log(caller)["items"]) == 1


def test_idempotency_keys_are_per_tenant(caller: Caller, make_caller: Callable[[], Caller]) -> None:
    other = make_caller()
    caller.connect()
    other.connect()
    a = submit(caller, idempotency_key="shared-key")
    b = submit(other, idempotency_key="shared-key")
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]


def test_idempotency_key_names_a_new_call_after_24_hours(
    caller: Caller, engine: Engine, published: PublishedIds
) -> None:
    # Given a key first used 25 hours ago
    caller.connect()
    first = submit(caller, idempotency_key="key-old").json()["id"]
    with session_scope(engine) as session:
        session.exec(
            update(FunctionCall)
            .where(col(FunctionCall.id) == first)
            .values(created_at=utcnow() - timedelta(hours=25))
        )
    # When it is used again, even with another body
    again = submit(caller, {"method": "GET", "url": "users.list"}, idempotency_key="key-old")
    # Then it names a new call, and the old one keeps its result but not the key
    assert again.status_code == 202, again.text
    assert again.json()["id"] != first
    with session_scope(engine) as session:
        old = session.get(FunctionCall, first)
        assert old is not None
        assert old.idempotency_key is None


# --- a call's own retry and timeout params --------------------------------------------------


def _stored(engine: Engine, call_id: str) -> FunctionCall:
    with session_scope(engine) as session:
        call = session.get(FunctionCall, call_id)
        assert call is not None
        session.expunge(call)
        return call


def test_retry_and_timeout_params_are_kept_with_the_call(caller: Caller, engine: Engine) -> None:
    # Given a call that asks for 2 attempts on 500/503 and a 5 s total timeout
    caller.connect()
    body = {
        **CALL,
        "retry": {"max_attempts": 2, "on_status": [500, 503]},
        "timeout": {"total_s": 5, "connect_s": 1.5},
    }
    # When submitted
    response = submit(caller, body)
    # Then it is accepted and the worker will find its params with it
    assert response.status_code == 202, response.text
    stored = _stored(engine, response.json()["id"])
    assert stored.options == {
        "retry": {"max_attempts": 2, "on_status": [500, 503]},
        "timeout": {"total_s": 5, "connect_s": 1.5},
    }


def test_a_call_without_them_stores_none(caller: Caller, engine: Engine) -> None:
    caller.connect()
    response = submit(caller, {**CALL, "retry": {}, "timeout": {}})
    assert response.status_code == 202, response.text
    assert _stored(engine, response.json()["id"]).options is None


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts"),
        ({"retry": {"max_attempts": 11}}, "retry.max_attempts"),
        ({"retry": {"on_status": [200]}}, "retry.on_status"),
        ({"retry": {"backoff": 3}}, "retry.backoff"),
        ({"timeout": {"total_s": 0}}, "timeout.total_s"),
        ({"timeout": {"read_s": -1}}, "timeout.read_s"),
        ({"timeout": {"total_s": 91}}, "timeout.total_s"),  # over PASSTHRU_MAX_TIMEOUT_S
    ],
)
def test_bad_retry_or_timeout_params_are_400(
    caller: Caller, published: PublishedIds, extra: dict[str, Any], field: str
) -> None:
    caller.connect()
    response = submit(caller, {**CALL, **extra})
    assert response.status_code == 400, response.text
    body = response.json()
    assert_error_shape(body, "invalid_params")
    assert any(d["field"].endswith(field) for d in body["error_details"]), body
    assert published.ids == []


def test_same_idempotency_key_with_other_retry_params_is_409(caller: Caller) -> None:
    caller.connect()
    first = submit(caller, {**CALL, "retry": {"max_attempts": 2}}, idempotency_key="key-r")
    other = submit(caller, {**CALL, "retry": {"max_attempts": 3}}, idempotency_key="key-r")
    assert first.status_code == 202
    assert other.status_code == 409
    assert_error_shape(other.json(), "idempotency_conflict")


def test_batch_items_carry_their_own_params(caller: Caller, engine: Engine) -> None:
    # Given a batch with one call asking for one attempt and one asking for too long a timeout
    caller.connect()
    calls = [
        {"function": "slack-passthrough-request", "params": {**CALL, "retry": {"max_attempts": 1}}},
        {"function": "slack-passthrough-request", "params": {**CALL, "timeout": {"total_s": 999}}},
    ]
    response = caller.client.post(
        "/function-calls/batch", json={"calls": calls}, headers=caller.headers()
    )
    # Then the first is accepted with its params and the second rejected, saying why
    assert response.status_code == 202, response.text
    body = response.json()
    [accepted] = body["accepted"]
    assert _stored(engine, accepted["id"]).options == {"retry": {"max_attempts": 1}}
    [rejected] = body["rejected"]
    assert rejected["index"] == 1
    assert rejected["error_details"][0]["field"].endswith("timeout.total_s")


# --- the log and cancel ---------------------------------------------------------------------


def test_log_paginates_newest_first(caller: Caller) -> None:
    # Given five calls
    caller.connect()
    ids = [submit(caller).json()["id"] for _ in range(5)]
    # When the log is read two at a time
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = log(caller, "?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        pages += 1
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Then every call is seen once, newest first
    assert pages == 3
    assert seen == list(reversed(ids))
    created = [c["created_at"] for c in log(caller)["items"]]
    assert created == sorted(created, reverse=True)


def test_log_filters_by_app_status_and_user(caller: Caller) -> None:
    # Given calls for two apps and two users
    caller.connect(app="slack", user="alice")
    caller.connect(app="pipedrive", user="alice")
    caller.connect(app="slack", user="bob")
    slack_alice = submit(caller, user="alice").json()["id"]
    pipedrive_alice = submit(
        caller, {"method": "GET", "url": "v1/deals"}, app="pipedrive", user="alice"
    ).json()["id"]
    slack_bob = submit(caller, user="bob").json()["id"]
    cancelled = caller.client.post(f"/function-calls/{slack_bob}/cancel", headers=caller.headers())
    assert cancelled.status_code == 200

    def ids(query: str) -> set[str]:
        return {item["id"] for item in log(caller, query)["items"]}

    # Then each filter selects exactly its calls
    assert ids("") == {slack_alice, pipedrive_alice, slack_bob}
    assert ids("?app=slack") == {slack_alice, slack_bob}
    assert ids("?app=pipedrive") == {pipedrive_alice}
    assert ids("?user_id=alice") == {slack_alice, pipedrive_alice}
    assert ids("?user_id=bob") == {slack_bob}
    assert ids("?status=queued") == {slack_alice, pipedrive_alice}
    assert ids("?status=cancelled") == {slack_bob}
    assert ids("?app=slack&user_id=alice&status=queued") == {slack_alice}
    assert ids("?app=hubspot") == set()


def test_log_refuses_unknown_status(caller: Caller) -> None:
    response = caller.client.get("/function-calls?status=exploded", headers=caller.headers())
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_params")


def test_cancel_queued_call_then_again_is_409(caller: Caller) -> None:
    # Given a queued call
    caller.connect()
    call_id = submit(caller).json()["id"]
    # When it is cancelled
    first = caller.client.post(f"/function-calls/{call_id}/cancel", headers=caller.headers())
    # Then it is cancelled and final
    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert first.json()["finished_at"] is not None
    # and cancelling again is a conflict
    again = caller.client.post(f"/function-calls/{call_id}/cancel", headers=caller.headers())
    assert again.status_code == 409
    assert_error_shape(again.json(), "not_cancellable")
    got = caller.client.get(f"/function-calls/{call_id}", headers=caller.headers())
    assert got.json()["status"] == "cancelled"


def test_unknown_call_id_is_404(caller: Caller) -> None:
    response = caller.client.get("/function-calls/fc_doesnotexist", headers=caller.headers())
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


# --- connected accounts --------------------------------------------------------------------


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
    assert other.client.get("/connected-accounts", headers=other.headers()).json() == {"items": []}
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
    assert caller.client.get("/connected-accounts", headers=caller.headers()).json() == {
        "items": []
    }


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


# --- functions ------------------------------------------------------------------------------


def _slack_function(functions: list[dict[str, Any]]) -> dict[str, Any]:
    return next(f for f in functions if f["name"] == "slack-passthrough-request")


def test_functions_lists_passthrough_per_app(caller: Caller) -> None:
    response = caller.client.get("/functions?type=passthrough", headers=caller.headers())
    assert response.status_code == 200
    functions = response.json()["functions"]
    names = {f["name"] for f in functions}
    assert {
        "slack-passthrough-request",
        "pipedrive-passthrough-request",
        "demo-passthrough-request",
    } <= names
    slack = _slack_function(functions)
    assert slack["app"] == "slack"
    assert slack["type"] == "passthrough"
    assert slack["description"]
    params = slack["parameters"]
    assert params["type"] == "object"
    assert set(params["required"]) == {"method", "url"}
    assert {"method", "url", "body", "headers"} <= set(params["properties"])
    assert "GET" in params["properties"]["method"]["enum"]


def test_functions_list_post_form(caller: Caller) -> None:
    response = caller.client.post("/functions/list?type=PASSTHROUGH", headers=caller.headers())
    assert response.status_code == 200
    assert _slack_function(response.json()["functions"])["type"] == "passthrough"


def test_functions_of_another_type_is_400(caller: Caller) -> None:
    response = caller.client.get("/functions?type=action", headers=caller.headers())
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_params")


def test_functions_need_a_key(caller: Caller) -> None:
    assert caller.client.get("/functions?type=passthrough").status_code == 401


def test_running_call_cannot_be_cancelled(caller: Caller, engine: Engine) -> None:
    # Given a call a worker has claimed
    caller.connect()
    call_id = submit(caller).json()["id"]
    with session_scope(engine) as session:
        session.exec(
            update(FunctionCall)
            .where(col(FunctionCall.id) == call_id)
            .values(status=CallStatus.RUNNING)
        )
    # When cancelled / Then it is a conflict and the call keeps running
    response = caller.client.post(f"/function-calls/{call_id}/cancel", headers=caller.headers())
    assert response.status_code == 409
    assert_error_shape(response.json(), "not_cancellable")
    got = caller.client.get(f"/function-calls/{call_id}", headers=caller.headers())
    assert got.json()["status"] == "running"


def test_log_filters_by_time(caller: Caller) -> None:
    caller.connect()
    call_id = submit(caller).json()["id"]
    assert log(caller, "?since=2999-01-01T00:00:00Z")["items"] == []
    assert [c["id"] for c in log(caller, "?until=2999-01-01T00:00:00")["items"]] == [call_id]
    assert [c["id"] for c in log(caller, "?since=2000-01-01T00:00:00Z")["items"]] == [call_id]
    assert log(caller, "?until=2000-01-01T00:00:00Z")["items"] == []


def _templated_app(catalog: Catalog) -> tuple[str, str, dict[str, Any]]:
    """A catalog app whose hosts come from connection_config, with credentials that fit it."""
    apps: list[App] = [
        a for a in catalog if a.template_fields and any("{" in h for h in a.allowed_hosts)
    ]
    if not apps:
        pytest.skip("no templated app in the catalog")
    app = apps[0]
    kind = sorted(app.credential_kinds)[0]
    credentials = {
        "oauth2": {"access_token": "t"},
        "api_key": {"api_key": "k"},
        "basic": {"username": "u", "password": "p"},
    }[kind]
    return app.slug, app.template_fields[0], credentials


def test_templated_app_needs_a_safe_connection_config(caller: Caller, catalog: Catalog) -> None:
    slug, field, credentials = _templated_app(catalog)
    for config in (None, {field: "evil.com"}, {field: "a/b"}, {field: "x@y"}):
        response = caller.client.post(
            "/connected-accounts",
            json={"app": slug, "credentials": credentials, "connection_config": config},
            headers=caller.headers(),
        )
        assert response.status_code == 400, config
        assert response.json()["error_details"][0]["field"] == "connection_config"


def test_templated_app_calls_stay_on_the_accounts_own_host(
    caller: Caller, catalog: Catalog
) -> None:
    # Given an account on subdomain "acme" of a templated app
    slug, field, credentials = _templated_app(catalog)
    created = caller.client.post(
        "/connected-accounts",
        json={"app": slug, "credentials": credentials, "connection_config": {field: "acme"}},
        headers=caller.headers(),
    )
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


# --- connected account status ---------------------------------------------------------------


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


def test_connection_config_changes_only_with_new_credentials(
    caller: Caller, catalog: Catalog
) -> None:
    # Given an account on subdomain "acme" of a templated app
    slug, field, credentials = _templated_app(catalog)
    created = caller.client.post(
        "/connected-accounts",
        json={"app": slug, "credentials": credentials, "connection_config": {field: "acme"}},
        headers=caller.headers(),
    )
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


# --- log filters and export -------------------------------------------------------------------


def finish(
    engine: Engine, call_id: str, code: str | None, status: CallStatus = CallStatus.COMPLETED
) -> None:
    """End a call as a worker would have (its result, not its attempts)."""
    with session_scope(engine) as session:
        session.exec(
            update(FunctionCall)
            .where(col(FunctionCall.id) == call_id)
            .values(status=status, network_code=code)
        )


def test_the_log_filters_on_the_upstream_status(caller: Caller, engine: Engine) -> None:
    caller.connect()
    codes = ["200", "429", "200", "404"]
    ids = [submit(caller).json()["id"] for _ in codes]
    for call_id, code in zip(ids, codes, strict=True):
        finish(engine, call_id, code)
    got = log(caller, "?network_code=200")["items"]
    assert sorted(c["id"] for c in got) == sorted([ids[0], ids[2]])
    bad = caller.client.get("/function-calls?network_code=abc", headers=caller.headers())
    assert bad.status_code == 400
    assert_error_shape(bad.json())


def test_the_export_streams_every_matching_call_as_ndjson(
    caller: Caller, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 7 calls, and export pages of 3 (so the stream spans pages)
    monkeypatch.setattr("api.call_log.EXPORT_PAGE", 3)
    caller.connect()
    ids = [submit(caller).json()["id"] for _ in range(7)]
    finish(engine, ids[0], "500")
    # When exported
    response = caller.client.get("/function-calls/export", headers=caller.headers())
    # Then every call is one JSON line, newest first
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [c["id"] for c in lines] == list(reversed(ids))
    # And the filters apply
    only = caller.client.get("/function-calls/export?network_code=500", headers=caller.headers())
    assert [json.loads(line)["id"] for line in only.text.splitlines()] == [ids[0]]


def test_a_wait_that_runs_out_answers_where_the_call_stands(caller: Caller) -> None:
    caller.connect()
    response = submit(caller, prefer="wait=0.2")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
