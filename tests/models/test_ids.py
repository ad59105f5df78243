"""Time-ordered ids: prefix, order by time, uniqueness."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from models.db.ids import first_id_at, new_id


def test_prefix_and_shape() -> None:
    ident = new_id("fc")
    assert re.fullmatch(r"fc_[0-9a-hjkmnp-tv-z]{26}", ident)


def test_ids_sort_by_time() -> None:
    # Given ids made at increasing milliseconds (random parts in any order)
    times = [0, 1, 2, 999, 1_000, 1_700_000_000_000, 1_700_000_000_001, 2**50 - 1]
    ids = [new_id("fc", now_ms=ms) for ms in times]
    # Then string order is time order
    assert sorted(ids) == ids
    assert sorted(reversed(ids)) == ids


def test_time_dominates_randomness() -> None:
    for _ in range(200):
        assert new_id("fc", now_ms=1_000) < new_id("fc", now_ms=1_001)


def test_same_time_ids_share_the_time_part() -> None:
    a, b = new_id("ca", now_ms=123456), new_id("ca", now_ms=123456)
    assert a[:13] == b[:13]
    assert a != b


def test_unique_over_ten_thousand() -> None:
    ids = {new_id("fc", now_ms=42) for _ in range(10_000)}
    assert len(ids) == 10_000
    ids_now = {new_id("fc") for _ in range(10_000)}
    assert len(ids_now) == 10_000


def test_ids_fit_their_columns() -> None:
    assert len(new_id("fc")) <= 40


def test_first_id_at_bounds_the_ids_made_from_then_on() -> None:
    # Given a moment, and the first id of that moment
    at = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)
    ms = int(at.timestamp() * 1000)
    first = first_id_at("fc", at)
    # Then every id made before it sorts below, every id made from then on not
    for _ in range(200):
        assert new_id("fc", now_ms=ms - 1) < first
        assert first <= new_id("fc", now_ms=ms)
    # And it can be moved, by whole milliseconds
    assert new_id("fc", now_ms=ms - 6) < first_id_at("fc", at, -5) <= new_id("fc", now_ms=ms - 5)
    # And any moment a caller can name is a bound, the first and the last years included
    assert first_id_at("fc", datetime(1, 1, 1, tzinfo=UTC), -1) <= new_id("fc", now_ms=0)
    last = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    assert first_id_at("fc", last, 300_000) > new_id("fc", now_ms=int(last.timestamp() * 1000))
