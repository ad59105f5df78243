"""Every field has a bound, checked before anything is written: values at the bound are
stored by every database (this module also runs on Postgres), one more is a 400 naming the
field. A batch checks each call alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.parsing import MAX_JSON_DEPTH
from api.schemas.accounts import CONFIG_ENTRIES, CONFIG_KEY_CHARS, CONFIG_VALUE_CHARS
from api.schemas.common import APP_CHARS, FUNCTION_CHARS, ID_CHARS, USER_ID_CHARS
from api.validation import MAX_HEADER_CHARS, MAX_HEADERS
from models.accounts.credentials import MAX_SECRET_CHARS
from models.net.urls import MAX_CALLBACK_URL_CHARS, MAX_URL_CHARS
from models.settings import DEFAULT_MAX_CALL_BODY_BYTES
from tests.api.conftest import Caller
from tests.api.test_errors import assert_error_shape

SLACK = "/slack-passthrough-request"
CALL: dict[str, Any] = {"method": "GET", "url": "conversations.list"}


def refused(response: Any, field: str) -> str:
    """The message of the 400 naming `field`."""
    assert response.status_code == 400, response.text
    assert_error_shape(response.json())
    messages = {d["field"]: d["message"] for d in response.json()["error_details"]}
    assert field in messages, messages
    return messages[field]


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# --- one call ---------------------------------------------------------------------------------


def test_values_at_their_bounds_are_stored(caller: Caller) -> None:
    # Given a user id of 200 characters, and a call with every bound reached
    user = "u" * USER_ID_CHARS
    account = caller.connect(user=user)
    path = "/" + "p" * (MAX_URL_CHARS - len("https://slack.com/api/"))
    callback = "https://hooks.example.com/" + "c" * (MAX_CALLBACK_URL_CHARS - 26)
    headers = {f"X-H{i}": "v" * MAX_HEADER_CHARS for i in range(MAX_HEADERS)}
    body = {"text": "b" * (DEFAULT_MAX_CALL_BODY_BYTES - len('{"text":""}'))}
    call = {
        "method": "POST",
        "url": path,
        "headers": headers,
        "body": body,
        "callback_url": callback,
        "connected_account_id": account,
    }
    # When it is submitted
    response = caller.client.post(
        SLACK, json=call, headers=caller.headers(user, **{"Idempotency-Key": "k" * 200})
    )
    # Then the database took every value
    assert response.status_code == 202, response.text[:500]
    assert response.json()["user_id"] == user
    assert len(response.json()["url"]) == MAX_URL_CHARS


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "/" + "p" * MAX_URL_CHARS}, "url"),
        (
            {"callback_url": "https://hooks.example.com/" + "c" * MAX_CALLBACK_URL_CHARS},
            "callback_url",
        ),
        ({"connected_account_id": "c" * (ID_CHARS + 1)}, "connected_account_id"),
        ({"headers": {f"X-H{i}": "v" for i in range(MAX_HEADERS + 1)}}, "headers"),
        ({"headers": {"X-Big": "v" * (MAX_HEADER_CHARS + 1)}}, "headers.X-Big"),
        ({"body": {"text": "b" * DEFAULT_MAX_CALL_BODY_BYTES}}, "body"),
        ({"body": nested(MAX_JSON_DEPTH)}, "body.0.0.0.…"),
        ({"callback_url": "http://[::1"}, "callback_url"),
        ({"callback_url": "https://hooks.example.com:abc/"}, "callback_url"),
        ({"callback_url": "https://hooks.example.com:0/"}, "callback_url"),
        ({"url": "slack.com/api/conversations.list"}, "url"),
        ({"url": "https://slack.com:8443/api/conversations.list"}, "url"),
    ],
)
def test_a_value_past_its_bound_is_a_400_naming_it(
    caller: Caller, change: dict[str, Any], field: str
) -> None:
    caller.connect()
    response = caller.client.post(SLACK, json={**CALL, **change}, headers=caller.headers())
    refused(response, field)
    assert caller.client.get("/function-calls", headers=caller.headers()).json()["items"] == []


def test_a_user_id_past_its_column_is_a_400_from_the_header_or_the_body(caller: Caller) -> None:
    long = "u" * (USER_ID_CHARS + 1)
    by_header = caller.client.post(SLACK, json=CALL, headers=caller.headers(long))
    refused(by_header, "X-User-ID")
    by_body = caller.client.post(
        "/function-calls",
        json={"function": "slack-passthrough-request", "params": CALL, "user_id": long},
        headers=caller.headers(None),
    )
    refused(by_body, "user_id")
    account = caller.client.post(
        "/connected-accounts",
        json={"app": "slack", "credentials": {"access_token": "t"}},
        headers=caller.headers(long),
    )
    refused(account, "X-User-ID")


def test_a_function_or_app_past_its_column_is_a_400(caller: Caller) -> None:
    function = caller.client.post(
        "/function-calls",
        json={"function": "f" * (FUNCTION_CHARS + 1), "params": CALL},
        headers=caller.headers(),
    )
    refused(function, "function")
    app = caller.client.post(
        "/connected-accounts",
        json={"app": "a" * (APP_CHARS + 1), "credentials": {"access_token": "t"}},
        headers=caller.headers(),
    )
    refused(app, "app")


def test_an_idempotency_key_past_its_column_is_a_400(caller: Caller) -> None:
    caller.connect()
    response = caller.client.post(
        SLACK, json=CALL, headers=caller.headers(**{"Idempotency-Key": "k" * 201})
    )
    refused(response, "Idempotency-Key")


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({f"k{i}": "v" for i in range(CONFIG_ENTRIES + 1)}, "connection_config"),
        ({"k" * (CONFIG_KEY_CHARS + 1): "v"}, "connection_config"),
        ({"region": "v" * (CONFIG_VALUE_CHARS + 1)}, "connection_config.region"),
        ({"region": {"nested": "object"}}, "connection_config.region"),
    ],
)
def test_connection_config_is_a_few_short_values(
    caller: Caller, config: dict[str, Any], field: str
) -> None:
    response = caller.client.post(
        "/connected-accounts",
        json={"app": "slack", "credentials": {"access_token": "t"}, "connection_config": config},
        headers=caller.headers(),
    )
    assert response.status_code == 400, response.text
    assert any(d["field"].startswith(field) for d in response.json()["error_details"])


@pytest.mark.parametrize(
    ("slug", "credentials", "field"),
    [
        ("slack", {"access_token": "t" * (MAX_SECRET_CHARS + 1)}, "credentials.access_token"),
        ("slack", {"access_token": "xoxb\r\nX-Injected: 1"}, "credentials.access_token"),
        ("slack", {"access_token": "t", "refresh_token": "r\n"}, "credentials.refresh_token"),
        ("slack", {"access_token": "tökén"}, "credentials.access_token"),
        ("close", {"api_key": "k\x7f"}, "credentials.api_key"),
        ("close", {"api_key": "k" * (MAX_SECRET_CHARS + 1)}, "credentials.api_key"),
        ("twilio", {"username": "AC1:x", "password": "p"}, "credentials.username"),
        ("twilio", {"username": "AC1", "password": "p\n"}, "credentials.password"),
        (
            "twilio",
            {"username": "AC1", "password": "p" * (MAX_SECRET_CHARS + 1)},
            "credentials.password",
        ),
    ],
)
def test_a_credential_that_cannot_be_sent_as_is_is_a_400_naming_it(
    caller: Caller, slug: str, credentials: dict[str, str], field: str
) -> None:
    # Given credentials too long, with line breaks or control characters, or not ASCII where
    # they go into a header as they are
    response = caller.client.post(
        "/connected-accounts",
        json={"app": slug, "credentials": credentials},
        headers=caller.headers(),
    )
    # Then nothing is stored, and the answer names the field without echoing its value
    refused(response, field)
    assert "X-Injected" not in response.text
    assert caller.client.get("/connected-accounts", headers=caller.headers()).json()["items"] == []


def test_credentials_at_their_bounds_are_stored(caller: Caller) -> None:
    for slug, credentials in (
        ("slack", {"access_token": "t" * MAX_SECRET_CHARS, "refresh_token": "r ~!"}),
        ("close", {"api_key": "k" * MAX_SECRET_CHARS}),
        ("twilio", {"username": "ÄC1", "password": "pässwörd with spaces"}),
    ):
        response = caller.client.post(
            "/connected-accounts",
            json={"app": slug, "credentials": credentials},
            headers=caller.headers(),
        )
        assert response.status_code == 201, response.text


def test_a_webhook_endpoint_url_is_checked_like_a_callback(caller: Caller) -> None:
    for url in ("http://[::1", "https://h.example.com:0/", "https://h.example.com/" + "x" * 3000):
        response = caller.client.put(
            "/webhook-endpoint", json={"url": url}, headers=caller.headers()
        )
        refused(response, "url")


def test_private_webhook_addresses_follow_the_operators_setting(
    caller: Caller, make_app: Callable[..., FastAPI]
) -> None:
    # Given the default (no private networks), a loopback endpoint is refused
    hook = {"url": "http://127.0.0.1:9000/hook"}
    refused(caller.client.put("/webhook-endpoint", json=hook, headers=caller.headers()), "url")
    caller.connect()
    callback = {**CALL, "callback_url": "http://10.0.0.8/hook"}
    refused(caller.client.post(SLACK, json=callback, headers=caller.headers()), "callback_url")
    # When the operator allows private networks for webhooks / Then both are taken
    allowing = TestClient(make_app(webhook_allow_private_networks=True))
    other = Caller(allowing, caller.tenant, caller.key)
    assert other.client.put("/webhook-endpoint", json=hook, headers=other.headers()).is_success
    assert other.client.post(SLACK, json=callback, headers=other.headers()).status_code == 202


# --- a batch checks each call alone -------------------------------------------------------------


def item(**params: Any) -> dict[str, Any]:
    return {"function": "slack-passthrough-request", "params": {**CALL, **params}}


def test_one_bad_call_is_one_rejected_item_never_a_failed_batch(caller: Caller) -> None:
    # Given a batch of good calls and every kind of bad one
    caller.connect()
    bad: list[tuple[Any, str]] = [
        ({**item(), "callback_url": "http://[::1"}, "callback_url"),
        ({**item(), "callback_url": "https://h.example.com:abc/"}, "callback_url"),
        (item(url="conversations\x00.list"), "params.url"),
        (item(body={"text": "a\x00"}), "params.body.text"),
        (item(body=nested(MAX_JSON_DEPTH)), "params.body.0.…"),
        (item(body=nested(300)), "params.body.0.…"),
        (item(url="/" + "p" * MAX_URL_CHARS), "params.url"),
        ({**item(), "user_id": "u" * (USER_ID_CHARS + 1)}, "user_id"),
        (item(headers={"X-Big": "v" * (MAX_HEADER_CHARS + 1)}), "headers.X-Big"),
        (item(body={"text": "b" * DEFAULT_MAX_CALL_BODY_BYTES}), "body"),
        ("not an object", "calls"),
        ([1, 2], "calls"),
        ({"function": "f" * 500, "params": CALL}, "function"),
    ]
    calls = [item()] + [call for call, _ in bad] + [item()]
    # When submitted
    response = caller.client.post(
        "/function-calls/batch", json={"calls": calls}, headers=caller.headers()
    )
    # Then the good calls are accepted and each bad one is rejected alone, field named
    assert response.status_code == 202, response.text[:1000]
    result = response.json()
    assert [a["index"] for a in result["accepted"]] == [0, len(calls) - 1]
    rejected = {r["index"]: r for r in result["rejected"]}
    assert sorted(rejected) == list(range(1, len(calls) - 1))
    for index, (_, field) in enumerate(bad, start=1):
        fields = [d["field"] for d in rejected[index]["error_details"]]
        assert any(f.startswith(field.rstrip("…")) for f in fields), (index, fields)


def test_a_batch_over_its_own_limit_is_a_413(
    caller: Caller, make_app: Callable[..., FastAPI]
) -> None:
    # Given an operator's batch limit of 10,000 bytes (and 2,000 for other requests)
    client = TestClient(make_app(max_request_bytes=2000, max_batch_request_bytes=10_000))
    small = Caller(client, caller.tenant, caller.key)
    small.connect()
    calls = [item(body={"text": "x" * 100}) for _ in range(30)]
    raw = json.dumps({"calls": calls}).encode()
    assert 2000 < len(raw) <= 10_000
    # When a batch within it is sent / Then it is taken, though larger than 2,000 bytes
    headers = small.headers(**{"Content-Type": "application/json"})
    ok = small.client.post("/function-calls/batch", content=raw, headers=headers)
    assert ok.status_code == 202, ok.text[:500]
    # And a batch one byte over is a 413 naming the batch setting
    over = raw + b" " * (10_001 - len(raw))
    response = small.client.post("/function-calls/batch", content=over, headers=headers)
    assert response.status_code == 413
    assert_error_shape(response.json(), "request_too_large")
    assert "PASSTHRU_MAX_BATCH_REQUEST_BYTES" in response.json()["error_details"][0]["message"]
