"""How long a caller asks to wait for a call to end: `Prefer` on a submission (RFC 7240:
`wait=N`, `respond-async`) and `?wait=N` on `GET /function-calls/{id}`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.errors import invalid
from models.settings import MAX_WAIT_S


@dataclass(frozen=True)
class Preference:
    """What `Prefer` asked for: `wait` seconds to honour (None: no wait asked), and
    whether `respond-async` was named."""

    wait_s: float | None = None
    respond_async: bool = False

    @property
    def applied(self) -> str | None:
        """The `Preference-Applied` header."""
        parts = []
        if self.respond_async:
            parts.append("respond-async")
        if self.wait_s is not None:
            parts.append(f"wait={self.wait_s:g}")
        return ", ".join(parts) or None


def parse_wait(text: str, field: str, max_wait_s: float) -> float:
    """A wait asked for (finite, 0 to MAX_WAIT_S) -> the seconds honoured (at most
    `max_wait_s`, the operator's PASSTHRU_MAX_WAIT_S)."""
    try:
        seconds = float(text.strip().strip('"'))
    except ValueError:
        raise invalid(field, "wait must be a number of seconds, e.g. wait=10") from None
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_WAIT_S:
        raise invalid(field, f"wait must be a number of seconds from 0 to {MAX_WAIT_S:g}")
    return min(seconds, max_wait_s)


def parse_prefer(prefer: str | None, max_wait_s: float) -> Preference:
    """`Prefer` (RFC 7240): `wait=N` and `respond-async`; other preferences are ignored."""
    if not prefer:
        return Preference()
    wait_s: float | None = None
    respond_async = False
    for part in prefer.split(","):
        name, _, value = part.split(";", 1)[0].strip().partition("=")
        name = name.strip().lower()
        if name == "wait" and wait_s is None:
            wait_s = parse_wait(value, "Prefer", max_wait_s)
        elif name == "respond-async":
            respond_async = True
    return Preference(wait_s, respond_async)
