"""Upstream answer -> stored `output` and `headers`."""

from __future__ import annotations

import base64

import pytest

from worker.calls.decode import decode_output, public_headers


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/vnd.api+json", None],
)
def test_json_is_decoded(content_type: str | None) -> None:
    assert decode_output(b'{"ok": true, "items": [1, 2]}', content_type) == {
        "ok": True,
        "items": [1, 2],
    }


@pytest.mark.parametrize("content_type", ["text/plain", "text/html; charset=utf-8", "text/csv"])
def test_text_is_kept_as_text(content_type: str) -> None:
    assert decode_output("héllo, <b>world</b>".encode(), content_type) == "héllo, <b>world</b>"


def test_json_looking_text_stays_text() -> None:
    assert decode_output(b'{"a": 1}', "text/plain") == '{"a": 1}'


def test_invalid_json_under_json_type_is_kept_as_text() -> None:
    assert decode_output(b"{not json", "application/json") == "{not json"


@pytest.mark.parametrize("content_type", ["application/xml", "application/x-www-form-urlencoded"])
def test_textual_application_types_are_text(content_type: str) -> None:
    assert decode_output(b"<a>1</a>", content_type) == "<a>1</a>"


def test_binary_is_base64_with_content_type() -> None:
    body = bytes(range(256))
    out = decode_output(body, "image/PNG")
    assert out == {"base64": base64.b64encode(body).decode(), "content_type": "image/png"}
    assert base64.b64decode(out["base64"]) == body


def test_binary_without_content_type_is_base64() -> None:
    body = b"\xff\xfe\x00\x01"
    out = decode_output(body, None)
    assert isinstance(out, dict)
    assert base64.b64decode(out["base64"]) == body


def test_text_without_content_type_is_text() -> None:
    assert decode_output(b"plain words", None) == "plain words"


def test_empty_body_is_none() -> None:
    assert decode_output(b"", "application/json") is None


def test_set_cookie_is_dropped_and_names_lower_cased() -> None:
    headers = public_headers(
        [
            ("Content-Type", "application/json"),
            ("Set-Cookie", "session=secret"),
            ("set-cookie2", "old=secret"),
            ("X-Request-Id", "abc"),
        ]
    )
    assert headers == {"content-type": "application/json", "x-request-id": "abc"}


def test_repeated_headers_are_joined() -> None:
    headers = public_headers([("Vary", "Accept"), ("vary", "Origin"), ("VARY", "Cookie")])
    assert headers == {"vary": "Accept, Origin, Cookie"}


def test_json_too_deep_to_store_is_kept_as_text() -> None:
    # Given JSON nested 300 deep (the database's encoder stops at 255 levels)
    body = b"[" * 300 + b"]" * 300
    # When decoded / Then it stays text: the call is stored, not lost to an encoder error
    assert decode_output(body, "application/json") == body.decode()


def test_wide_json_with_many_brackets_is_still_json() -> None:
    body = b"[" + b",".join(b'{"a": [1]}' for _ in range(1000)) + b"]"
    assert decode_output(body, "application/json") == [{"a": [1]}] * 1000


def test_json_of_too_many_arrays_and_objects_is_kept_as_text() -> None:
    # `[[],[],...]` would cost a Python object per pair of brackets
    body = b"[" + b",".join([b"[]"] * 200_000) + b"]"
    assert decode_output(body, "application/json") == body.decode()
