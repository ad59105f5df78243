"""How long one onward request may take: the call's own timeouts, else the app's, else the
operator's defaults; whichever applies, never above the operator's cap."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.catalog.spec import TimeoutSpec


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float
    read_s: float  # longest silence while waiting for bytes
    total_s: float  # the whole exchange, redirects and body included


def resolve_timeouts(
    call: Mapping[str, Any] | None, app: TimeoutSpec, defaults: Timeouts, cap_s: float
) -> Timeouts:
    """Per field: the call's value, else the app's, else the default; each capped at `cap_s`,
    and connect/read never longer than the total."""
    call = call or {}

    def pick(name: str, default: float) -> float:
        value = call.get(name)
        if value is None:
            value = getattr(app, name)
        return min(float(default if value is None else value), cap_s)

    total = pick("total_s", defaults.total_s)
    return Timeouts(
        connect_s=min(pick("connect_s", defaults.connect_s), total),
        read_s=min(pick("read_s", defaults.read_s), total),
        total_s=total,
    )
