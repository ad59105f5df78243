"""Every error answers `{error, error_details: [{field, message}]}`: never a 422 or traceback."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, IntegrityError
from starlette.testclient import TestClient

from api.errors import error_response, validation_error
from models.errors import ApiError, ErrorDetail, invalid, not_found
from tests.api.conftest import Caller


def assert_error_shape(body: Any, error: str | None = None) -> None:
    assert set(body) == {"error", "error_details"}
    assert isinstance(body["error"], str)
    assert isinstance(body["error_details"], list)
    for detail in body["error_details"]:
        assert set(detail) == {"field", "message"}
        assert isinstance(detail["field"], str)
        assert isinstance(detail["message"], str)
    if error is not None:
        assert body["error"] == error


# --- the helpers ----------------------------------------------------------------------------


def test_api_error_body() -> None:
    err = invalid("url", "is required")
    assert err.status_code == 400
    assert err.body() == {
        "error": "invalid_params",
        "error_details": [{"field": "url", "message": "is required"}],
    }


def test_not_found_is_404() -> None:
    err = not_found("function call", "fc_x")
    assert err.status_code == 404
    assert err.error == "not_found"


def test_error_response_adds_www_authenticate_on_401() -> None:
    response = error_response(ApiError("unauthorized", [ErrorDetail("Authorization", "x")], 401))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_error_shape(orjson.loads(response.body), "unauthorized")
    assert "www-authenticate" not in error_response(invalid("a", "b")).headers


def test_validation_error_maps_fields_without_location_prefix() -> None:
    exc = RequestValidationError(
        [
            {"type": "missing", "loc": ("body", "url"), "msg": "Field required"},
            {"type": "extra_forbidden", "loc": ("body", "bogus"), "msg": "Extra inputs"},
            {"type": "int_parsing", "loc": ("query", "limit"), "msg": "not an int"},
        ]
    )
    err = validation_error(exc)
    assert err.status_code == 400
    assert err.error == "invalid_params"
    assert [(d.field, d.message) for d in err.details] == [
        ("url", "Field required"),
        ("bogus", "is not a known field"),
        ("limit", "not an int"),
    ]


def test_a_huge_key_is_not_echoed_whole() -> None:
    exc = RequestValidationError(
        [{"type": "string_type", "loc": ("body", "headers", "k" * 100_000), "msg": "not a str"}]
    )
    (detail,) = validation_error(exc).details
    assert detail.field == "headers." + "k" * 100 + "…"


def test_validation_error_for_bad_json() -> None:
    exc = RequestValidationError([{"type": "json_invalid", "loc": ("body", 1), "msg": "bad"}])
    err = validation_error(exc)
    assert err.error == "invalid_json"
    assert err.details[0].field == "body"


# --- through HTTP ---------------------------------------------------------------------------


def test_missing_api_key_is_401(client: TestClient) -> None:
    response = client.get("/function-calls")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_error_shape(response.json(), "unauthorized")


@pytest.mark.parametrize(
    "authorization", ["Bearer pt_not-a-real-key", "Bearer ", "Basic dXNlcjpwYXNz", "pt_raw"]
)
def test_wrong_api_key_is_401(client: TestClient, authorization: str) -> None:
    response = client.get("/function-calls", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_error_shape(response.json(), "unauthorized")


def test_api_key_is_checked_before_the_body(client: TestClient) -> None:
    response = client.post(
        "/slack-passthrough-request",
        json={"method": "GET", "url": "x"},
        headers={"Authorization": "Bearer wrong"},
    )
    assert response.status_code == 401


def test_malformed_json_is_invalid_json(caller: Caller) -> None:
    response = caller.client.post(
        "/slack-passthrough-request",
        content=b'{"method": "GET", "url": ',
        headers=caller.headers(**{"Content-Type": "application/json"}),
    )
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_json")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "conversations.list"}, "method"),
        ({"method": "GET"}, "url"),
        ({"method": "GET", "url": "x", "surprise": 1}, "surprise"),
        ({"method": "GET", "url": "x", "headers": {"X": 1}}, "headers.X"),
    ],
)
def test_bad_body_is_400_never_422(caller: Caller, body: dict[str, Any], field: str) -> None:
    response = caller.client.post("/slack-passthrough-request", json=body, headers=caller.headers())
    assert response.status_code == 400
    payload = response.json()
    assert_error_shape(payload, "invalid_params")
    assert field in [d["field"] for d in payload["error_details"]]


@pytest.mark.parametrize(
    ("content", "kind"),
    [(b"[1, 2]", "an array"), (b'"text"', "a string"), (b"null", "null"), (b"42", "a number")],
)
def test_valid_json_that_is_not_an_object_says_so(
    caller: Caller, content: bytes, kind: str
) -> None:
    # Given valid JSON that is not an object, sent as JSON
    response = caller.client.post(
        "/slack-passthrough-request",
        content=content,
        headers=caller.headers(**{"Content-Type": "application/json"}),
    )
    # Then the answer says what it is, and does not blame the Content-Type
    assert response.status_code == 400
    assert_error_shape(response.json())
    assert response.json()["error_details"] == [
        {
            "field": "body",
            "message": f"the body is valid JSON but {kind}; it must be a JSON object ({{...}})",
        }
    ]


def test_a_body_not_sent_as_json_names_the_content_type(caller: Caller) -> None:
    response = caller.client.post(
        "/slack-passthrough-request",
        content=b'{"method": "GET", "url": "x"}',
        headers=caller.headers(**{"Content-Type": "text/plain"}),
    )
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["error_details"][0]["message"]


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (b'{"method": "GET", "url": ', "line 1 column 26 (character 25)"),
        (b'{"method": "GET",\n "url": }', "line 2 column 9 (character 26)"),
        (b"{'method': 'GET'}", "line 1 column 2 (character 1)"),
    ],
)
def test_a_json_syntax_error_says_where(caller: Caller, content: bytes, where: str) -> None:
    for path in ("/slack-passthrough-request", "/function-calls/batch"):
        response = caller.client.post(
            path, content=content, headers=caller.headers(**{"Content-Type": "application/json"})
        )
        assert response.status_code == 400
        assert_error_shape(response.json(), "invalid_json")
        message = response.json()["error_details"][0]["message"]
        assert message.startswith("the body is not valid JSON: ")
        assert message.endswith(f" at {where}")


def test_bad_query_parameter_is_400(caller: Caller) -> None:
    response = caller.client.get("/function-calls?limit=0", headers=caller.headers())
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_params")
    assert response.json()["error_details"][0]["field"] == "limit"


@pytest.mark.parametrize("path", ["/nope", "/function-calls/x/y/z", "/v1/slack-passthrough"])
def test_unknown_path_is_404_in_error_shape(caller: Caller, path: str) -> None:
    response = caller.client.get(path, headers=caller.headers())
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/function-calls", "GET, POST"),
        ("GET", "/slack-passthrough-request", "POST"),
        ("POST", "/connected-accounts/ca_x", "PATCH, DELETE"),
    ],
)
def test_wrong_method_is_405_with_allow(caller: Caller, method: str, path: str, allow: str) -> None:
    response = caller.client.request(method, path, headers=caller.headers())
    assert response.status_code == 405
    assert_error_shape(response.json(), "method_not_allowed")
    assert response.headers["Allow"] == allow
    assert method in response.json()["error_details"][0]["message"]


@pytest.mark.parametrize("exception", [DataError, IntegrityError])
def test_a_value_the_database_refuses_is_a_400_not_a_500(
    caller: Caller,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    exception: type[DataError] | type[IntegrityError],
) -> None:
    # Given a database that refuses a value (validation missed a column's bound)
    def refuse(*_: Any, **__: Any) -> None:
        raise exception(
            "INSERT ...", {}, Exception("value too long for type character varying(40)")
        )

    monkeypatch.setattr("api.routes.calls.list_calls", refuse)
    # When it happens on a request
    response = caller.client.get("/function-calls", headers=caller.headers())
    # Then the caller gets a 400 in the error shape, and the operator a log line
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_params")
    assert response.json()["error_details"] == [
        {"field": "body", "message": "a value was refused by the database"}
    ]
    assert "the database refused a value on GET /function-calls" in caplog.text


def test_healthz_needs_no_key(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
