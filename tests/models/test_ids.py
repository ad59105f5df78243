"""Time-ordered ids: prefix, order by time, uniqueness."""

from __future__ import annotations

import re

from models.db.ids import new_id


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
