"""A call's output and response headers as stored: compact JSON bytes, zlib-compressed
when that saves room, read back as the JSON value whichever way it was stored.

A stored value is the value's JSON (orjson, no spaces) or, for JSON of PACK_ABOVE bytes or
more that zlib makes smaller, its zlib stream. The two are told apart by the first byte:
a zlib stream at the default window starts with 0x78 ('x'), which no JSON text does. Rows
stored before migration 0012 hold their JSON as it was written, and read the same way.
Postgres compresses (TOAST) only values of about 2 KB and more; the typical upstream answer
(a few hundred bytes of JSON, a dozen headers) is stored as is without this.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator

PACK_ABOVE = 200  # bytes of JSON below which compressing gains too little to pay for it
_LEVEL = 6
_ZLIB = 0x78


def pack(value: Any) -> bytes | None:
    """The bytes stored for `value` (None stays NULL)."""
    if value is None:
        return None
    data = orjson.dumps(value)
    if len(data) >= PACK_ABOVE:
        packed = zlib.compress(data, _LEVEL)
        if len(packed) < len(data):
            return packed
    return data


def unpack(stored: bytes | memoryview | str | None) -> Any:
    """The JSON value of stored bytes, compressed or not."""
    if stored is None:
        return None
    data = stored.encode() if isinstance(stored, str) else bytes(stored)
    if data[:1] == bytes((_ZLIB,)):
        data = zlib.decompress(data)
    return orjson.loads(data)


class PackedJSON(TypeDecorator[Any]):
    """A JSON value stored as `pack` makes it (bytea on Postgres, a BLOB on SQLite)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        return pack(value)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        # Straight from the driver's bytes (or memoryview), without LargeBinary's copy.
        return unpack
