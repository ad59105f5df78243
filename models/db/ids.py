"""Time-ordered identifiers: sortable, so the newest-first log pages by id alone."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_MAX_MS = 32**10 - 1  # the last millisecond 10 characters hold (year 37,648)


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str, *, now_ms: int | None = None) -> str:
    """`prefix_` + 10 chars of millisecond time + 16 random chars (80 bits)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_encode(ms, 10)}{_encode(rand, 16)}"


def is_id(prefix: str, value: str) -> bool:
    """Whether `value` has the form of an id `new_id(prefix)` makes."""
    return re.fullmatch(f"{re.escape(prefix)}_[{_ALPHABET}]{{26}}", value) is not None


def first_id_at(prefix: str, at: datetime, shift_ms: int = 0) -> str:
    """The smallest id `new_id(prefix)` makes at `at` (moved by `shift_ms`) or later: ids made
    before sort below it, ids made at or after it do not (a time range as a range of ids).
    Any datetime is taken, year 1 to 9999 (clamped to the ids' range)."""
    ms = min(max(0, int(at.timestamp() * 1000) + shift_ms), _MAX_MS)
    return f"{prefix}_{_encode(ms, 10)}{_ALPHABET[0] * 16}"
