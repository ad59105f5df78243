"""Answers the API writes by hand (errors, readiness) are compact JSON, UTF-8 unescaped, with
`content-type: application/json`: the bytes orjson would write for the same value."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from tests.api.conftest import Caller

CALL = {"method": "GET", "url": "conversations.list"}


def assert_compact_json(response: Response) -> None:
    content, headers = response.content, response.headers
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(content)
    assert content == orjson.dumps(orjson.loads(content))


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/apps/n\u00e9\u2028", 404),  # a route's ApiError, the app's name echoed
        ("/apps?x=%00", 400),  # refused before routing
        ("/no-such-path", 404),  # Starlette's own 404, in the error shape
    ],
)
def test_an_error_is_compact_json(caller: Caller, path: str, status: int) -> None:
    response = caller.client.get(path, headers=caller.headers())
    assert response.status_code == status
    assert_compact_json(response)


def test_a_refusal_before_the_body_is_read_is_compact_json(client: TestClient) -> None:
    response = client.post("/slack-passthrough-request", json=CALL)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert_compact_json(response)


def test_a_field_with_control_characters_is_escaped_as_json(caller: Caller) -> None:
    caller.connect()
    body = {**CALL, "headers": {"a\u0001b": "x", "\u00e9": "y"}}
    response = caller.client.post("/slack-passthrough-request", json=body, headers=caller.headers())
    assert response.status_code == 400
    assert b'"headers.a\\u0001b"' in response.content
    assert '"headers.\u00e9"'.encode() in response.content
    assert_compact_json(response)


def test_not_ready_is_compact_json(client: TestClient) -> None:
    # The test app's Redis does not answer
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == "not_ready"
    assert_compact_json(response)
