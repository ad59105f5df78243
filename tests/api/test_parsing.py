"""JSON bodies: how many arrays, objects and values bounded before parsing, nesting bounded,
no NUL anywhere, only what the database can store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

import api.parsing
from api.parsing import (
    MAX_JSON_CONTAINERS,
    MAX_JSON_DEPTH,
    MAX_JSON_VALUES,
    PARSE_ON_THREAD_BYTES,
    find_problem,
    item_problem,
    problem_of,
    too_complex,
)
from tests.api.conftest import Caller, Parse
from tests.api.test_errors import assert_error_shape


def nested(levels: int, leaf: Any = 1) -> Any:
    """`levels` arrays, one inside the other."""
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


# --- the pure checks ------------------------------------------------------------------------


def test_nesting_up_to_the_limit_is_fine_one_more_is_not() -> None:
    assert find_problem(nested(MAX_JSON_DEPTH)) is None
    problem = find_problem(nested(MAX_JSON_DEPTH + 1))
    assert problem is not None
    assert "nested deeper than 64" in problem.message


def test_the_field_names_the_path_to_the_deep_value() -> None:
    body = {"method": "GET", "url": "x", "body": {"a": nested(MAX_JSON_DEPTH)}}
    problem = find_problem(body)
    assert problem is not None
    assert problem.field == "body.a.0.0.…"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"url": "a\x00b"}, "url"),
        ({"body": {"list": ["ok", "no\x00"]}}, "body.list.1"),
        ({"headers": {"X-A\x00": "v"}}, "headers.X-A\\u0000"),
        ("\x00", "body"),
    ],
)
def test_a_nul_anywhere_is_named(value: Any, field: str) -> None:
    problem = find_problem(value)
    assert problem is not None
    assert problem.field == field
    assert "NUL" in problem.message


def test_an_ordinary_body_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a body with few brackets and no escaped NUL
    raw = b'{"method": "GET", "url": "x", "body": {"a": [1, 2, {"b": "c"}]}}'

    def walked(*_: Any, **__: Any) -> None:
        raise AssertionError("walked")

    monkeypatch.setattr(api.parsing, "find_problem", walked)
    # When checked / Then the raw bytes alone clear it
    assert problem_of(raw, {}) is None


def test_the_prefilter_lets_the_walk_find_what_it_must() -> None:
    assert problem_of(b'{"a": "\\u0000"}', {"a": "\x00"}) is not None
    deep = nested(MAX_JSON_DEPTH + 1)
    raw = b"[" * (MAX_JSON_DEPTH + 1) + b"1" + b"]" * (MAX_JSON_DEPTH + 1)
    assert problem_of(raw, deep) is not None


def test_an_item_too_deep_even_to_encode_is_found() -> None:
    # orjson refuses to encode past 254 levels; the walk still names it
    problem = item_problem({"params": {"body": nested(300)}})
    assert problem is not None
    assert problem.field.startswith("params.body.0")
    assert item_problem({"params": {"body": nested(10)}}) is None


def array_of(unit: bytes, n: int) -> bytes:
    return b"[" + b",".join([unit] * n) + b"]"


def test_arrays_objects_and_values_up_to_their_bounds_are_fine_one_more_is_not() -> None:
    assert too_complex(array_of(b"[]", MAX_JSON_CONTAINERS - 1)) is None
    assert too_complex(array_of(b"{}", MAX_JSON_CONTAINERS)) is not None
    assert too_complex(array_of(b"0", MAX_JSON_VALUES)) is None
    error = too_complex(array_of(b"0", MAX_JSON_VALUES + 1))
    assert error is not None
    assert error.status_code == 413
    assert error.error == "request_too_large"
    assert f"{MAX_JSON_VALUES + 1} values" in error.details[0].message


@pytest.mark.parametrize(
    "string",
    [rb'"[,{"', rb'"\\[,"', rb'"a\\\"[,"', rb'"\u005b,["'],
    ids=["plain", "an escaped backslash", "an escaped quote", "a unicode escape"],
)
def test_brackets_and_commas_inside_strings_are_not_counted(string: bytes) -> None:
    # Given a body whose strings hold many brackets and commas, but few of its own
    raw = b'{"body": [' + b",".join([string] * (MAX_JSON_VALUES - 1)) + b"]}"
    assert raw.count(b"[") + raw.count(b",") > MAX_JSON_VALUES
    assert orjson.loads(raw)  # it is JSON
    # Then it is within bounds
    assert too_complex(raw) is None


def test_an_unclosed_string_of_escaped_quotes_is_taken_out_in_one_pass() -> None:
    # Given 5 MiB: a million commas, then a string that never ends, made of escaped quotes
    # (a pattern that can fail would start again at each quote: hours of one thread)
    raw = b"," * MAX_JSON_VALUES + b'"' + b'\\"' * 2_000_000
    # Then the string is one match to the end of the body, and the commas are counted
    match = api.parsing._STRING.search(raw)
    assert match is not None
    assert (match.start(), match.end()) == (MAX_JSON_VALUES, len(raw))
    error = too_complex(raw)
    assert error is not None
    assert f"{MAX_JSON_VALUES + 1} values" in error.details[0].message


def test_a_body_with_more_strings_than_values_can_be_is_refused_uncounted() -> None:
    raw = b"[" + b'"",' * (2 * MAX_JSON_VALUES) + b'""]'
    error = too_complex(raw)
    assert error is not None
    assert "strings" in error.details[0].message


def test_a_string_that_never_ends_holds_what_the_parser_also_reads_as_a_string() -> None:
    # Given brackets after a string that never ends: counted as the string's, as the parser
    # reads them too, so it builds nothing from them and refuses the body as not JSON
    raw = b'["' + b"[," * MAX_JSON_VALUES
    assert too_complex(raw) is None
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


# --- through HTTP ---------------------------------------------------------------------------


def post(caller: Caller, raw: bytes) -> Any:
    return caller.client.post(
        "/slack-passthrough-request",
        content=raw,
        headers=caller.headers(**{"Content-Type": "application/json"}),
    )


def call_with_body(levels: int) -> bytes:
    return b'{"method": "GET", "url": "x", "body": ' + b"[" * levels + b"1" + b"]" * levels + b"}"


def test_a_body_nested_300_deep_is_a_400_naming_the_field(caller: Caller) -> None:
    # Given a call whose body nests 300 arrays
    caller.connect()
    # When submitted
    response = post(caller, call_with_body(300))
    # Then a 400 names the field, in the error shape
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_params")
    assert response.json()["error_details"][0]["field"].startswith("body.0.0")


def test_a_body_at_the_depth_limit_is_accepted(caller: Caller) -> None:
    # Given a call nesting exactly 64 levels in all (the object itself is one)
    caller.connect()
    response = post(caller, call_with_body(MAX_JSON_DEPTH - 1))
    # Then it is accepted, and one level more is not
    assert response.status_code == 202, response.text
    assert post(caller, call_with_body(MAX_JSON_DEPTH)).status_code == 400


def test_a_body_past_the_parsers_depth_is_invalid_json_not_a_500(caller: Caller) -> None:
    response = post(caller, call_with_body(5000))
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_json")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"method": "GET", "url": "conversations\\u0000.list"}', "url"),
        (b'{"method": "GET", "url": "x", "body": {"text": "a\\u0000"}}', "body.text"),
        (b'{"method": "GET", "url": "x", "headers": {"X-Note": "\\u0000"}}', "headers.X-Note"),
    ],
)
def test_a_nul_in_the_body_is_a_400_naming_the_field(
    caller: Caller, raw: bytes, field: str
) -> None:
    caller.connect()
    response = post(caller, raw)
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_params")
    assert response.json()["error_details"][0]["field"] == field


@pytest.mark.parametrize(
    "raw",
    [
        b'{"method": "GET", "url": "x", "body": NaN}',
        b'{"method": "GET", "url": "x", "body": 1e400}',
        b'{"method": "GET", "url": "x", "body": "\\ud800"}',
    ],
)
def test_json_the_database_cannot_store_is_invalid_json(caller: Caller, raw: bytes) -> None:
    caller.connect()
    response = post(caller, raw)
    assert response.status_code == 400
    assert_error_shape(response.json(), "invalid_json")
    assert response.json()["error_details"][0]["field"] == "body"


def test_a_nul_in_an_account_is_refused_too(caller: Caller) -> None:
    response = caller.client.post(
        "/connected-accounts",
        content=b'{"app": "slack", "credentials": {"access_token": "t\\u0000"}}',
        headers=caller.headers(**{"Content-Type": "application/json"}),
    )
    assert response.status_code == 400
    assert response.json()["error_details"][0]["field"] == "credentials.access_token"


def test_every_route_reads_json_through_the_guard(caller: Caller) -> None:
    # A route added without route_class=JSONRoute would skip every check above
    from fastapi.routing import APIRoute

    routes: list[APIRoute] = []
    for entry in caller.client.app.routes:  # type: ignore[attr-defined]
        router = getattr(entry, "original_router", None)  # an included router
        for route in [entry] if router is None else router.routes:
            if isinstance(route, APIRoute):
                routes.append(route)
    assert len(routes) > 20
    for route in routes:
        assert isinstance(route, api.parsing.JSONRoute), route.path


@pytest.mark.parametrize(
    ("unit", "n"),
    [
        (b"[]", MAX_JSON_CONTAINERS + 1),
        (b"{}", MAX_JSON_CONTAINERS + 1),
        (b"0", MAX_JSON_VALUES + 1),
    ],
    ids=["arrays", "objects", "values"],
)
def test_a_body_with_too_many_arrays_objects_or_values_is_a_413_unparsed(
    caller: Caller, watch_json_parser: Callable[[], list[Parse]], unit: bytes, n: int
) -> None:
    # Given a call whose body holds one more than its bound, and the parser watched
    caller.connect()
    parsed = watch_json_parser()
    raw = b'{"method": "POST", "url": "x", "body": ' + array_of(unit, n) + b"}"
    # When it is posted (within the size limit)
    response = post(caller, raw)
    # Then it is a 413 in the error shape, and nothing was parsed
    assert response.status_code == 413, response.text
    assert_error_shape(response.json(), "request_too_large")
    assert response.json()["error_details"][0]["field"] == "body"
    assert parsed == []


def test_a_large_body_is_parsed_off_the_event_loop(
    caller: Caller, watch_json_parser: Callable[[], list[Parse]]
) -> None:
    # Given the parser watched for the thread it runs on
    parsed = watch_json_parser()
    caller.connect()
    small = b'{"method": "POST", "url": "x", "body": {"t": "s"}}'
    large = (
        b'{"method": "POST", "url": "x", "body": {"t": "' + b"s" * PARSE_ON_THREAD_BYTES + b'"}}'
    )
    # When a small and a large body are posted
    assert post(caller, small).status_code == 202
    loop_thread = parsed[-1].thread
    assert post(caller, large).status_code == 202
    # Then the small one was parsed where the request ran, the large one on another thread
    assert parsed[-1].thread != loop_thread
