"""The last hour's pure parts: the window and its minute buckets, percentiles as
`percentile_cont` computes them, the bars' geometry, and the page's escaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.console.chart_geometry import (
    CALLS_HEIGHT,
    CALLS_MARGIN,
    LABEL_CHARS,
    AppLatency,
    Minute,
    calls_chart,
    epoch_minute,
    latency_chart,
    minutes,
    nice_ceiling,
    percentile,
    short,
    window,
)
from api.console.pages import render

NOW = datetime(2031, 5, 6, 7, 8, 9, 500_000, tzinfo=UTC)


def test_the_window_is_the_sixty_whole_minutes_ending_with_nows() -> None:
    since, until = window(NOW)
    assert since == datetime(2031, 5, 6, 6, 9, tzinfo=UTC)
    assert until == datetime(2031, 5, 6, 7, 9, tzinfo=UTC)
    assert epoch_minute(until) - epoch_minute(since) == 60


def test_rows_fill_their_minutes_and_the_rest_stay_empty() -> None:
    since, _ = window(NOW)
    first = epoch_minute(since)
    rows = [
        (first, "completed", 3),
        (first, "failed", 1),
        (first + 59, "queued", 2),
        (first - 1, "completed", 9),  # before the window
        (first + 60, "completed", 9),  # after it
    ]
    filled = minutes(since, rows)
    assert len(filled) == 60
    assert filled[0] == Minute(since, {"completed": 3, "failed": 1})
    assert filled[59].counts == {"queued": 2}
    assert filled[59].start == since + timedelta(minutes=59)
    assert sum(m.total for m in filled) == 6


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.95, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 0.95, 3.85),
        ([10.0, 20.0, 30.0, 40.0, 1000.0], 0.95, 808.0),
        ([10.0, 20.0, 30.0], 0.5, 20.0),
    ],
)
def test_percentiles_interpolate_between_ranks_as_percentile_cont(
    values: list[float], fraction: float, expected: float | None
) -> None:
    found = percentile(values, fraction)
    assert found == pytest.approx(expected) if expected is not None else found is None


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 1), (1, 1), (3, 5), (7, 10), (10, 10), (11, 20), (250, 500)]
)
def test_the_value_axis_ends_at_a_round_number(value: float, expected: float) -> None:
    assert nice_ceiling(value) == expected


def test_bar_heights_are_in_proportion_to_the_calls_and_stack() -> None:
    since, _ = window(NOW)
    first = epoch_minute(since)
    chart = calls_chart(
        minutes(since, [(first, "completed", 6), (first, "failed", 4), (first + 1, "queued", 5)])
    )
    _, top, _, bottom = CALLS_MARGIN
    plot_h = CALLS_HEIGHT - top - bottom
    by_kind = {bar.kind: bar for bar in chart.bars}
    assert [bar.kind for bar in chart.bars] == ["completed", "failed", "queued"]
    # The axis ends at 10: 6 calls are 60 % of the plot, 4 are 40 %, 5 are 50 %
    assert by_kind["completed"].height == pytest.approx(plot_h * 0.6)
    assert by_kind["failed"].height == pytest.approx(plot_h * 0.4)
    assert by_kind["queued"].height == pytest.approx(plot_h * 0.5)
    # Completed sits on the axis, failed on top of it
    assert by_kind["completed"].y + by_kind["completed"].height == pytest.approx(chart.bottom)
    assert by_kind["failed"].y + by_kind["failed"].height == pytest.approx(by_kind["completed"].y)
    assert by_kind["queued"].x > by_kind["completed"].x
    assert [t.label for t in chart.value_ticks] == ["0", "5", "10"]
    assert chart.category_ticks[0].label == "06:09"
    assert len(chart.category_ticks) == 6


def test_an_empty_hour_has_no_bars_and_a_unit_axis() -> None:
    since, _ = window(NOW)
    chart = calls_chart(minutes(since, []))
    assert chart.bars == []
    assert [t.label for t in chart.value_ticks] == ["0", "0.5", "1"]
    assert latency_chart([]).bars == []


def test_one_status_only_fills_its_bars_to_the_top() -> None:
    since, _ = window(NOW)
    first = epoch_minute(since)
    chart = calls_chart(minutes(since, [(first + 30, "failed", 20)]))
    assert [(bar.kind, bar.y) for bar in chart.bars] == [("failed", chart.top)]
    assert chart.bars[0].title == "06:39 failed: 20"


def test_latency_bars_share_one_axis() -> None:
    chart = latency_chart(
        [AppLatency("hubspot", 4, 100.0, 400.0), AppLatency("slack", 9, 50.0, 500.0)]
    )
    widths = {(bar.title.split()[0], bar.kind): bar.width for bar in chart.bars}
    assert widths[("slack", "p95")] == pytest.approx(chart.right - chart.left)
    assert widths[("hubspot", "p95")] == pytest.approx(0.8 * widths[("slack", "p95")])
    assert widths[("slack", "p50")] == pytest.approx(0.1 * widths[("slack", "p95")])
    assert [t.label for t in chart.category_ticks] == ["hubspot", "slack"]
    assert chart.height > latency_chart([AppLatency("slack", 1, 1.0, 1.0)]).height


def test_long_app_names_are_cut_for_the_label() -> None:
    assert short("slack") == "slack"
    assert len(short("x" * 80)) == LABEL_CHARS
    assert short("x" * 80).endswith("\u2026")


def test_values_are_escaped_in_the_svg_and_the_tables() -> None:
    since, until = window(NOW)
    hostile = "<script>alert(1)</script>"
    latencies = [AppLatency(hostile, 1, 5.0, 5.0)]
    per_minute = minutes(since, [(epoch_minute(since), "completed", 1)])
    html = render(
        "charts.html",
        since=since,
        until=until,
        per_minute=per_minute,
        calls=1,
        calls_chart=calls_chart(per_minute),
        latencies=latencies,
        latency_chart=latency_chart(latencies),
        statuses=["completed"],
        sample=10,
        csrf_token="t",
        signed_in=True,
    ).body.decode()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    latency_svg = html.split('class="chart latency-chart"')[1].split("</svg>")[0]
    assert "&lt;script&gt;alert(1)&lt;\u2026</text>" in latency_svg  # its cut label
