"""The last hour's charts, pure: the window and its minute buckets, percentiles computed as
Postgres' `percentile_cont` computes them, and the bars, ticks and labels of the two inline
SVGs in viewBox units (the stylesheet colours them by class: the CSP refuses `style`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from api.console.views import BAR_ORDER

# Minutes the charts cover: the current minute and the 59 before it.
WINDOW_MINUTES = 60
# The calls chart's viewBox and its margins (room for the axes' labels).
CALLS_WIDTH, CALLS_HEIGHT = 720.0, 260.0
CALLS_MARGIN = (56.0, 12.0, 12.0, 46.0)  # left, top, right, bottom
# The latency chart: one row per app, two bars (p50, p95) in each.
LATENCY_WIDTH, LATENCY_ROW = 720.0, 36.0
LATENCY_MARGIN = (130.0, 8.0, 40.0, 46.0)
# Characters of an app's name shown beside its bars (the table shows it whole).
LABEL_CHARS = 18
# Minutes between two labels of the time axis.
TIME_TICK_EVERY = 10


@dataclass(frozen=True)
class Minute:
    """One minute of the window and its calls per status."""

    start: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class AppLatency:
    """An app's answered attempts in the window and their duration percentiles (ms).
    `sampled`: they come from a sample of the newest attempts, not all (SQLite)."""

    app: str
    answers: int
    p50_ms: float
    p95_ms: float
    sampled: bool = False


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # a status, or p50 / p95
    title: str


@dataclass(frozen=True)
class Tick:
    at: float  # along its axis, in viewBox units
    label: str


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    kind: str  # axis or grid


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str  # SVG text-anchor: start, middle or end
    kind: str = "tick"  # or axis-label
    turned: bool = False  # rotated a quarter turn to the left (x and y then swap roles)


@dataclass(frozen=True)
class Chart:
    """A chart in its viewBox: the plot's edges, the bars, the ticks of the value axis and
    of the categories (minutes, apps), and the lines and labels that frame it."""

    width: float
    height: float
    left: float
    top: float
    right: float
    bottom: float
    bars: list[Bar]
    value_ticks: list[Tick]
    category_ticks: list[Tick]
    lines: list[Line] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)


def window(now: datetime) -> tuple[datetime, datetime]:
    """[since, until): the WINDOW_MINUTES whole minutes that end with `now`'s minute."""
    until = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return until - timedelta(minutes=WINDOW_MINUTES), until


def epoch_minute(moment: datetime) -> int:
    """Minutes since 1970-01-01 UTC, as the database's bucket expression counts them."""
    return math.floor(moment.timestamp()) // 60


def minutes(since: datetime, rows: Iterable[tuple[int, str, int]]) -> list[Minute]:
    """Every minute of the window from `since`, each with its counts from `rows` of
    (epoch minute, status, calls); rows outside the window are left out."""
    first = epoch_minute(since)
    counts: list[dict[str, int]] = [{} for _ in range(WINDOW_MINUTES)]
    for minute, status, n in rows:
        index = minute - first
        if 0 <= index < WINDOW_MINUTES and n:
            counts[index][status] = counts[index].get(status, 0) + n
    return [Minute(since + timedelta(minutes=i), c) for i, c in enumerate(counts)]


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The `fraction` percentile of `ordered` (ascending) by linear interpolation between
    the closest ranks, as `percentile_cont`; None when it is empty."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _r(value: float) -> float:
    return round(value, 2)


def _value_ticks(top_value: float, zero: float, span: float, unit: str) -> list[Tick]:
    """0, half and the whole of the value axis, which runs `span` units from `zero`."""
    return [
        Tick(_r(zero + span * share), f"{top_value * share:g}{unit}") for share in (0.0, 0.5, 1.0)
    ]


def _framed(c: Chart, value_name: str, category_name: str | None, values_up: bool) -> Chart:
    """`c` with its axes, grid lines (one per value tick) and labels placed; the value axis
    runs up the page when `values_up`, else across it."""
    below, label_y = c.bottom + 18, c.height - 4
    middle_x, middle_y = _r((c.left + c.right) / 2), _r((c.top + c.bottom) / 2)
    lines: list[Line] = []
    labels: list[Label] = []
    for t in c.value_ticks:
        if values_up:
            lines.append(Line(c.left, t.at, c.right, t.at, "grid"))
            labels.append(Label(c.left - 6, t.at + 4, t.label, "end"))
        else:
            lines.append(Line(t.at, c.top, t.at, c.bottom, "grid"))
            labels.append(Label(t.at, below, t.label, "middle"))
    for t in c.category_ticks:
        labels.append(
            Label(t.at, below, t.label, "middle")
            if values_up
            else Label(c.left - 6, t.at + 4, t.label, "end")
        )
    if values_up:
        labels.append(Label(-middle_y, 18, value_name, "middle", "axis-label", turned=True))
    else:
        labels.append(Label(middle_x, label_y, value_name, "middle", "axis-label"))
    if category_name:
        labels.append(Label(middle_x, label_y, category_name, "middle", "axis-label"))
    lines.append(Line(c.left, c.bottom, c.right, c.bottom, "axis"))
    lines.append(Line(c.left, c.top, c.left, c.bottom, "axis"))
    return replace(c, lines=lines, labels=labels)


def calls_chart(per_minute: Sequence[Minute]) -> Chart:
    """One stacked bar per minute (statuses in BAR_ORDER, ended calls at the bottom), its
    height in proportion to the calls; the value axis ends at a round number."""
    left, top, right, bottom = CALLS_MARGIN
    plot_w = CALLS_WIDTH - left - right
    plot_h = CALLS_HEIGHT - top - bottom
    base = top + plot_h
    top_value = nice_ceiling(max((m.total for m in per_minute), default=0))
    slot = plot_w / max(len(per_minute), 1)
    bars: list[Bar] = []
    ticks: list[Tick] = []
    for i, minute in enumerate(per_minute):
        x = left + i * slot
        stacked = 0
        for status in BAR_ORDER:
            n = minute.counts.get(status, 0)
            if not n:
                continue
            y_top = base - plot_h * (stacked + n) / top_value
            height = plot_h * n / top_value
            label = f"{minute.start:%H:%M} {status}: {n}"
            bars.append(Bar(_r(x + 1), _r(y_top), _r(slot - 2), _r(height), status, label))
            stacked += n
        if i % TIME_TICK_EVERY == 0:
            ticks.append(Tick(_r(x + slot / 2), f"{minute.start:%H:%M}"))
    values = _value_ticks(top_value, base, -plot_h, "")  # the axis runs up the page
    chart = Chart(
        CALLS_WIDTH, CALLS_HEIGHT, left, top, CALLS_WIDTH - right, base, bars, values, ticks
    )
    return _framed(chart, "Calls", "Minute (UTC)", values_up=True)


def short(name: str) -> str:
    """An app's name cut to LABEL_CHARS characters, with an ellipsis when cut."""
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "\u2026"


def latency_chart(latencies: Sequence[AppLatency]) -> Chart:
    """Per app, a p50 bar above a p95 bar, their lengths in proportion to the milliseconds
    on a shared axis that ends at a round number."""
    left, top, right, bottom = LATENCY_MARGIN
    plot_w = LATENCY_WIDTH - left - right
    height = top + LATENCY_ROW * len(latencies) + bottom
    top_value = nice_ceiling(max((a.p95_ms for a in latencies), default=0))
    bars: list[Bar] = []
    labels: list[Tick] = []
    for i, app in enumerate(latencies):
        row_top = top + i * LATENCY_ROW
        for j, (kind, ms) in enumerate((("p50", app.p50_ms), ("p95", app.p95_ms))):
            width = plot_w * ms / top_value
            title = f"{app.app} {kind}: {ms:g} ms"
            bars.append(Bar(left, _r(row_top + 4 + j * 14), _r(width), 12.0, kind, title))
        labels.append(Tick(_r(row_top + LATENCY_ROW / 2), short(app.app)))
    base = top + LATENCY_ROW * len(latencies)
    values = _value_ticks(top_value, left, plot_w, " ms")
    right_edge = LATENCY_WIDTH - right
    chart = Chart(LATENCY_WIDTH, height, left, top, right_edge, base, bars, values, labels)
    return _framed(chart, "Milliseconds", None, values_up=False)
