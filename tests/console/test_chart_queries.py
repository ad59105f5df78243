"""The last hour's queries on the test database (SQLite, and Postgres in its pass): each
dialect's minute buckets at their edges, and the bounded sample of the percentiles."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from api.console import chart_queries
from api.console.chart_geometry import AppLatency, epoch_minute, window
from api.console.chart_queries import calls_per_minute, latency_by_app
from models.calls.states import CallStatus
from tests.console.conftest import Tenancy
from tests.console.test_console_charts import answered

NOW = datetime(2031, 5, 6, 7, 8, 30, tzinfo=UTC)


def test_each_call_falls_in_the_minute_it_was_created_in(engine: Engine, tenancy: Tenancy) -> None:
    since, until = window(NOW)
    edges = [
        since,  # the window's first instant
        since + timedelta(seconds=59, microseconds=999_999),  # still its first minute
        since + timedelta(minutes=1),  # the second minute's first instant
        until - timedelta(microseconds=1),  # the last minute's last instant
        until,  # after the window
        since - timedelta(microseconds=1),  # before it
    ]
    for moment in edges:
        tenancy.call(status=CallStatus.COMPLETED, created_at=moment)
    first = epoch_minute(since)
    assert sorted(calls_per_minute(engine, tenancy.tenant.id, since, until)) == [
        (first, "completed", 2),
        (first + 1, "completed", 1),
        (first + 59, "completed", 1),
    ]


def test_the_percentiles_come_from_the_newest_answers_when_there_are_more(
    engine: Engine, new_tenancy: Callable[[], Tenancy], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given five answered calls a minute apart, slowest first, and a sample of three
    tenancy = new_tenancy()
    since, until = window(NOW)
    for i, ms in enumerate((900, 800, 30, 20, 10)):
        call = tenancy.call(status=CallStatus.COMPLETED, created_at=since + timedelta(minutes=i))
        answered(tenancy, call, ms)
    monkeypatch.setattr(chart_queries, "SAMPLE", 3)
    # Then the three newest alone count, and the result says it is a sample
    assert latency_by_app(engine, tenancy.tenant.id, since, until) == [
        AppLatency("slack", 3, 20.0, 29.0, sampled=True)
    ]
    # And with room for all five, none is left out
    monkeypatch.setattr(chart_queries, "SAMPLE", 5)
    assert latency_by_app(engine, tenancy.tenant.id, since, until) == [
        AppLatency("slack", 5, 30.0, 880.0, sampled=True)
    ]
    monkeypatch.setattr(chart_queries, "SAMPLE", 6)
    assert latency_by_app(engine, tenancy.tenant.id, since, until)[0].sampled is False
