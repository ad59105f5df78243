"""How long a caller asks to wait for a call to end: `Prefer` on a submission (RFC 7240:
`wait=N`, `respond-async`) and `?wait=N` on `GET /function-calls/{id}`; and how long a
submission waits, the operator's PASSTHRU_DEFAULT_WAIT_S applying when `Prefer` asks nothing.

| `Prefer` on a submission          | waits                   | no long poll free        |
|-----------------------------------|-------------------------|--------------------------|
| none, or only unknown preferences | PASSTHRU_DEFAULT_WAIT_S | no wait: 202 at once     |
| `respond-async`                   | no wait: 202 at once    | (holds none)             |
| `wait=N`, `respond-async, wait=N` | N                       | 429, nothing written     |

Every wait is served for at most PASSTHRU_MAX_WAIT_S; a wait of 0 holds no long poll, and
any other holds one of the tenant's PASSTHRU_TENANT_MAX_WAITS (the last column: none free). A
call that ends within the wait is answered 200 with its result, else 202 where it stands.
"""

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


@dataclass(frozen=True)
class SubmissionWait:
    """How long a submission waits for its call to end (0: not at all), and whether the
    caller asked for it (`Prefer`) rather than getting the operator's default. An asked-for
    wait beyond the tenant's long polls is a 429; a default one is given up (202 at once)."""

    wait_s: float
    asked: bool


def submission_wait(
    preference: Preference, default_wait_s: float, max_wait_s: float
) -> SubmissionWait:
    """`Prefer: wait=N` wins (its N already served up to `max_wait_s`), then
    `respond-async` (no wait), then the operator's default, also served up to `max_wait_s`."""
    if preference.wait_s is not None:
        return SubmissionWait(preference.wait_s, asked=True)
    if preference.respond_async:
        return SubmissionWait(0.0, asked=True)
    return SubmissionWait(min(default_wait_s, max_wait_s), asked=False)


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
