"""`GET /functions` and `POST /functions/list`: one passthrough function per app."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Caller
from tests.api.test_errors import assert_error_shape


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


def test_functions_filter_by_category_and_search(caller: Caller) -> None:
    # Given the chat apps / When functions are listed for chat, searched for "slack"
    headers = caller.headers()
    chat = caller.client.get("/functions?type=passthrough&category=chat", headers=headers)
    found = caller.client.post("/functions/list?q=SLACK", headers=headers)
    # Then only chat apps' functions, and only slack's, are listed
    apps = {f["app"] for f in chat.json()["functions"]}
    assert "slack" in apps
    assert "pipedrive" not in apps
    names = {f["name"] for f in found.json()["functions"]}
    assert "slack-passthrough-request" in names
    assert "pipedrive-passthrough-request" not in names
