"""Every refusal answers in the documented shape, and refused calls are never logged."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Caller, Stack

# `once` (SQLite pass only): its subject is the error shape and refusals made before any row
# is written; nothing in it depends on the database.
pytestmark = pytest.mark.once

SLACK_CALL = {"method": "GET", "url": "https://slack.com/api/conversations.list"}


def assert_error(r: httpx.Response, status: int, error: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "error_details"}, body
    assert body["error"] == error, body
    assert all(set(d) == {"field", "message"} for d in body["error_details"])
    if field is not None:
        assert field in [d["field"] for d in body["error_details"]], body


def log_size(caller: Caller) -> int:
    return len(caller.http.get("/function-calls", params={"limit": 500}).json()["items"])


def test_missing_and_wrong_api_key_are_401(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url) as anonymous:
        r = anonymous.post("/slack-passthrough-request", json=SLACK_CALL)
        assert_error(r, 401, "unauthorized", "Authorization")
        assert r.headers["www-authenticate"] == "Bearer"
        r = anonymous.get("/function-calls", headers={"Authorization": "Bearer pt_wrong"})
        assert_error(r, 401, "unauthorized")
        r = anonymous.get("/function-calls", headers={"Authorization": "Basic abc"})
        assert_error(r, 401, "unauthorized")


def test_unknown_app_is_404(caller: Caller) -> None:
    r = caller.http.post(
        "/nosuchapp-passthrough-request", json=SLACK_CALL, headers={"X-User-ID": "u"}
    )
    assert_error(r, 404, "unknown_app", "app")
    r = caller.http.post(
        "/function-calls", json={"function": "nosuchapp-passthrough-request", "params": SLACK_CALL}
    )
    assert_error(r, 404, "unknown_app")


@pytest.mark.parametrize(
    ("headers", "body", "error", "field"),
    [
        # no connected account for this user
        ({"X-User-ID": "nobody"}, SLACK_CALL, "no_connected_account", "X-User-ID"),
        # no user at all
        ({}, SLACK_CALL, "no_connected_account", "X-User-ID"),
        # an account id of another app
        (
            {"X-User-ID": "u-err"},
            {**SLACK_CALL, "connected_account_id": "ca_nope"},
            "no_connected_account",
            "connected_account_id",
        ),
        # URL off the app's hosts
        (
            {"X-User-ID": "u-err"},
            {"method": "GET", "url": "https://evil.example.com/api/x"},
            "invalid_params",
            "url",
        ),
        # plain http for an https app
        (
            {"X-User-ID": "u-err"},
            {"method": "GET", "url": "http://slack.com/api/x"},
            "invalid_params",
            "url",
        ),
        # unknown method
        (
            {"X-User-ID": "u-err"},
            {"method": "TRACE", "url": "https://slack.com/api/x"},
            "invalid_params",
            "method",
        ),
        # headers that would replace the injected credentials
        (
            {"X-User-ID": "u-err"},
            {**SLACK_CALL, "headers": {"Authorization": "Bearer mine"}},
            "invalid_params",
            "headers.Authorization",
        ),
        # missing url, unknown field, wrong type
        ({"X-User-ID": "u-err"}, {"method": "GET"}, "invalid_params", "url"),
        ({"X-User-ID": "u-err"}, {**SLACK_CALL, "surprise": 1}, "invalid_params", "surprise"),
        (
            {"X-User-ID": "u-err"},
            {**SLACK_CALL, "headers": {"X-N": 5}},
            "invalid_params",
            "headers.X-N",
        ),
    ],
)
def test_calls_that_will_not_execute_are_400_and_not_logged(
    caller: Caller, headers: dict[str, str], body: dict[str, Any], error: str, field: str
) -> None:
    # Given a user with a Slack account, and the log as it is
    caller.connect("slack", "u-err", {"access_token": "xoxb-err"})
    before = log_size(caller)

    # When a call that cannot execute is submitted
    r = caller.http.post("/slack-passthrough-request", json=body, headers=headers)

    # Then it is refused in the error shape, and nothing was logged
    assert_error(r, 400, error, field)
    assert log_size(caller) == before


def test_malformed_json_is_400(caller: Caller) -> None:
    r = caller.http.post(
        "/slack-passthrough-request",
        content=b'{"method": "GET", "url": ',
        headers={"Content-Type": "application/json", "X-User-ID": "u"},
    )
    assert_error(r, 400, "invalid_json", "body")
    r = caller.http.post(
        "/function-calls", content=b"[1, 2", headers={"Content-Type": "application/json"}
    )
    assert_error(r, 400, "invalid_json")


def test_credentials_that_do_not_fit_the_app_are_400(caller: Caller) -> None:
    r = caller.http.post(
        "/connected-accounts",
        headers={"X-User-ID": "u"},
        json={"app": "slack", "credentials": {"username": "a", "password": "b"}},
    )
    assert_error(r, 400, "invalid_params", "credentials")
    r = caller.http.post(
        "/connected-accounts",
        headers={"X-User-ID": "u"},
        json={"app": "slack", "credentials": {"access_token": ""}},
    )
    assert_error(r, 400, "invalid_params", "credentials.access_token")
    r = caller.http.post(
        "/connected-accounts",
        headers={"X-User-ID": "u"},
        json={"app": "nosuch", "credentials": {"api_key": "k"}},
    )
    assert_error(r, 400, "unknown_app", "app")


def test_unknown_routes_and_methods_use_the_error_shape(caller: Caller) -> None:
    assert_error(caller.http.get("/nope"), 404, "not_found")
    assert_error(caller.http.delete("/function-calls"), 405, "method_not_allowed")
    assert_error(caller.http.get("/function-calls/fc_missing"), 404, "not_found")
    assert_error(
        caller.http.get("/function-calls", params={"status": "bogus"}),
        400,
        "invalid_params",
        "status",
    )
