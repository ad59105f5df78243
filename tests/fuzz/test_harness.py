"""The fuzz harness's own logic: the error-shape check, reading tracebacks out of the API's
log, naming operations, and reproducers. (`make fuzz` runs the harness itself.)"""

from __future__ import annotations

import contextlib
import json

import pytest

from models.net.urls import MAX_CALLBACK_URL_CHARS, parse_http_url
from tests.fuzz.findings import Request, Traceback, operation_of, tracebacks_in, varied
from tests.fuzz.shape import response_shape_problem, shape_problem
from tests.fuzz.stack import ROOT
from tests.fuzz.values import CALLBACK_OTHER, CALLBACK_REFUSED, PREFER_OK, PREFER_REFUSED

ERROR = {"error": "invalid_params", "error_details": [{"field": "url", "message": "bad"}]}
TEMPLATES = [
    "/{app}-passthrough-request",
    "/function-calls",
    "/function-calls/batch",
    "/function-calls/{call_id}",
    "/function-calls/{call_id}/cancel",
]


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def test_the_error_shape_is_accepted() -> None:
    assert shape_problem(ERROR) is None
    assert response_shape_problem(400, _json(ERROR), "/function-calls") is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"Invalid HTTP request received.", "not JSON"),
        (_json({"detail": "Not Found"}), "'error' is missing"),
        (_json({"error": "x"}), "'error_details' is missing"),
        (_json({"error": "x", "error_details": [{"field": "f"}]}), "an error detail"),
        (_json(["error"]), "not a JSON object"),
    ],
)
def test_a_4xx_outside_the_error_shape_is_a_problem(body: bytes, problem: str) -> None:
    found = response_shape_problem(422, body, "/function-calls")
    assert found is not None
    assert problem in found


def test_rejected_batch_items_must_have_the_error_shape() -> None:
    good = {"batch_id": "bt_1", "accepted": [], "rejected": [{"index": 0, **ERROR}]}
    bad = {"batch_id": "bt_1", "accepted": [], "rejected": [{"index": 0, "error": "x"}]}
    assert response_shape_problem(202, _json(good), "/function-calls/batch") is None
    assert response_shape_problem(202, _json(bad), "/function-calls/batch") is not None
    assert response_shape_problem(202, _json(bad), "/function-calls") is None  # not a batch


def _exc(last: str) -> str:
    return (
        "Traceback (most recent call last):\n"
        f'  File "{ROOT}/.venv/lib/python3.11/site-packages/starlette/routing.py", line 1, in x\n'
        f'  File "{ROOT}/api/validation.py", line 149, in check_callback_url\n'
        '  File "/usr/lib/python3.11/urllib/parse.py", line 497, in urlsplit\n'
        f"{last}"
    )


def test_tracebacks_come_from_passthru_lines_and_uvicorn_copies_are_skipped() -> None:
    # Given a 500 logged by passthru and then by uvicorn, and an error only uvicorn saw
    passthru = {
        "level": "error",
        "msg": "unexpected error on POST /slack-passthrough-request",
        "exc": _exc("ValueError: Invalid IPv6 URL"),
    }
    log = "\n".join(
        [
            json.dumps({"level": "info", "msg": "call accepted"}),
            json.dumps(passthru),
            "ERROR:    Exception in ASGI application",
            _exc("ValueError: Invalid IPv6 URL"),
            "ERROR:    Exception in ASGI application",
            _exc("RuntimeError: outside the app"),
            json.dumps({"level": "info", "msg": "call accepted"}),
        ]
    )
    # When the log is read
    found = tracebacks_in(log)
    # Then each error is there once, with where it happened
    assert [(where, tb.exception_line) for where, tb in found] == [
        ("POST /slack-passthrough-request", "ValueError: Invalid IPv6 URL"),
        (None, "RuntimeError: outside the app"),
    ]
    assert found[0][1].frame == "api/validation.py:149 in check_callback_url"


def test_the_exception_line_skips_what_sqlalchemy_appends() -> None:
    tb = Traceback(
        _exc("sqlalchemy.exc.StatementError: (builtins.TypeError) Recursion limit reached")
        + "\n[SQL: INSERT INTO function_call (id) VALUES (?)]\n[parameters: [{'id': 'fc_1'}]]"
    )
    assert tb.exception_line.startswith("sqlalchemy.exc.StatementError: ")
    assert tb.tail(2).endswith("Recursion limit reached")


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "/slack-passthrough-request", "POST /{app}-passthrough-request"),
        ("POST", "/function-calls/batch", "POST /function-calls/batch"),
        ("GET", "/function-calls/fc_1?wait=1", "GET /function-calls/{call_id}"),
        ("POST", "/function-calls/%00/cancel", "POST /function-calls/{call_id}/cancel"),
        ("GET", "/nowhere", "GET /nowhere"),
    ],
)
def test_a_path_is_named_by_its_operation(method: str, path: str, operation: str) -> None:
    assert operation_of(method, path, TEMPLATES) == operation


def test_a_reproducer_uses_pt_and_key_and_quotes_the_body() -> None:
    request = Request(
        "POST",
        "/slack-passthrough-request",
        {"Authorization": "Bearer pt_secret", "Prefer": "wait=nan", "User-Agent": "x"},
        b'{"callback_url": "it\'s"}',
    )
    curl = request.curl()
    assert curl.startswith('curl -sS -X POST "$PT/slack-passthrough-request"')
    assert '"Authorization: Bearer $KEY"' in curl
    assert "pt_secret" not in curl
    assert "User-Agent" not in curl
    assert '--data-binary \'{"callback_url": "it\'"\'"\'s"}\'' in curl


def test_a_failing_request_is_grouped_by_what_it_varied() -> None:
    body = _json({"method": "GET", "url": "x", "callback_url": "http://[::1"})
    request = Request("POST", "/function-calls", {"Prefer": "wait=61"}, body)
    assert varied(request) == (
        "Prefer on submissions",
        'Prefer: wait=61, url "http://[::1"',
    )


def test_the_value_lists_do_not_overlap() -> None:
    assert not set(PREFER_OK) & set(PREFER_REFUSED)
    assert not set(CALLBACK_REFUSED) & set(CALLBACK_OTHER)


@pytest.mark.parametrize("url", CALLBACK_REFUSED)
def test_the_callback_urls_expected_refused_are_those_the_workers_parser_refuses(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each with its own message
        parse_http_url(url, max_chars=MAX_CALLBACK_URL_CHARS)


@pytest.mark.parametrize("url", CALLBACK_OTHER)
def test_the_other_callback_urls_parse_or_are_refused_cleanly(url: str) -> None:
    with contextlib.suppress(ValueError):
        parse_http_url(url, max_chars=MAX_CALLBACK_URL_CHARS)
