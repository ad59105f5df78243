"""How the console shows values: durations, times, a result as pretty JSON, text, or a
note for binary, and a batch's progress as bar segments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from models.calls.states import FINAL
from models.webhooks.states import ENDED

# What a missing value shows (an en dash).
NONE_SHOWN = "\u2013"


@dataclass(frozen=True)
class Shown:
    """A body as the page shows it: `kind` is json, text, binary or none."""

    kind: str
    text: str


def shown(value: Any) -> Shown:
    """A stored body (the worker's `output`, or a request body) for the page."""
    if value is None:
        return Shown("none", "")
    if isinstance(value, str):
        return Shown("text", value)
    if isinstance(value, dict) and set(value) == {"base64", "content_type"}:
        size = len(str(value["base64"])) * 3 // 4
        return Shown("binary", f"binary ({value['content_type']}, about {size} bytes)")
    pretty = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    return Shown("json", pretty.decode())


def duration(ms: int | None) -> str:
    if ms is None:
        return NONE_SHOWN
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def seconds(value: float) -> str:
    """A period in seconds, without a needless fraction: 60.0 is `60 s`, 0.5 is `0.5 s`."""
    return f"{value:g} s"


def when(moment: datetime | None) -> str:
    return NONE_SHOWN if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def settled(status: str) -> int:
    """1 when a call's or a webhook delivery's status will not change by itself (the
    `data-final` of a row, which tells a live page whether to keep updating), else 0."""
    return int(status in FINAL or status in ENDED)


# The order of a progress bar's segments: ended calls first.
BAR_ORDER = ("completed", "failed", "cancelled", "running", "retrying", "queued")


@dataclass(frozen=True)
class Segment:
    """One status's part of a batch's progress bar: `start` and `width` in percent."""

    status: str
    count: int
    start: float
    width: float


def progress(counts: dict[str, int], total: int) -> list[Segment]:
    """A batch's calls per status as bar segments, in BAR_ORDER; empty ones left out."""
    segments: list[Segment] = []
    start = 0.0
    for status in BAR_ORDER:
        count = counts.get(status, 0)
        if count and total:
            width = round(100 * count / total, 2)
            segments.append(Segment(status, count, start, width))
            start += width
    return segments


FILTERS = {
    "duration": duration,
    "seconds": seconds,
    "when": when,
    "shown": shown,
    "settled": settled,
}
