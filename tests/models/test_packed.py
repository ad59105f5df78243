"""Outputs and headers as stored: plain compact JSON when small, zlib when large and
smaller so, and every stored form (legacy JSON text included) reads back the value."""

from __future__ import annotations

import zlib

import pytest

from models.db.packed import PACK_ABOVE, pack, unpack

VALUES: list[object] = [
    None,
    True,
    0,
    -2.5,
    "text",
    "x" * 1_000,
    [1, "é", None],
    {"a": {"b": []}},
    {"items": [{"id": i} for i in range(200)]},
]


@pytest.mark.parametrize("value", VALUES)
def test_every_json_value_reads_back_as_it_was(value: object) -> None:
    assert unpack(pack(value)) == value


def test_a_small_value_is_stored_as_compact_json() -> None:
    assert pack({"a": [1, 2]}) == b'{"a":[1,2]}'


def test_a_large_repetitive_value_is_stored_compressed() -> None:
    value = {"items": [{"id": i, "name": "item"} for i in range(PACK_ABOVE)]}
    stored = pack(value)
    assert stored is not None
    assert stored[:1] == b"x"
    assert zlib.decompress(stored).startswith(b'{"items":')


def test_json_text_stored_before_packing_reads_back() -> None:
    # Given values as the JSON columns held them: text, or bytes of that text
    assert unpack('{"a": [1, 2]}') == {"a": [1, 2]}
    assert unpack(memoryview(b'"x"')) == "x"
    assert unpack(None) is None
