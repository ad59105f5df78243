"""Rate limits as pure functions: which limits a call falls under, and when it may go.

The limiter is GCRA (the generic cell rate algorithm) in its *reserving* form: asking for a
slot books the earliest time every applicable limit allows, even in the future, so calls
that must wait get distinct, evenly spaced slots instead of waking together and racing.

For a limit of `limit` per `period_s` with a burst of `burst`:
  T (emission interval)  = period / limit
  tau (burst tolerance)  = (burst - 1) * T
  each key stores TAT, the theoretical arrival time of its next call.
A call may go at max(now, paused_until, TAT_i - tau_i over every limit i); booking it moves
each TAT_i to max(TAT_i, slot) + T_i (for a far slot, only on the limits that are that far
behind: see `book`). Over any window of length W a key admits at most W / T + burst calls.
Times are integer milliseconds on one clock: Redis' (`TIME`) in production, so workers'
clocks never matter.

`models/ratelimit/store.py` runs this same arithmetic in one Lua script (Redis) or in memory.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from models.catalog.apps import App
from models.catalog.spec import RateLimitSpec
from models.keys import PREFIX

KEY_PREFIX = f"{PREFIX}:rl"


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit as it applies to one call."""

    key: str  # where its TAT lives
    interval_ms: int  # T
    tolerance_ms: int  # tau
    label: str  # for people: "slack: 50 per 60 s per account"


@dataclass(frozen=True, slots=True)
class Booking:
    """The answer to "when may this call go?"."""

    slot_ms: int  # when it may go, on the limiter's clock
    now_ms: int  # the limiter's clock when it answered
    booked: tuple[bool, ...]  # per rule: whether a slot was booked on it
    reason: str | None  # what made it wait (a rule's label, or "paused ..."); None: no wait
    tats_ms: tuple[int | None, ...] = ()  # per rule: its new TAT when booked

    @property
    def wait_ms(self) -> int:
        return max(0, self.slot_ms - self.now_ms)

    @property
    def complete(self) -> bool:
        """Booked on every rule: the call may go at `slot_ms`."""
        return all(self.booked)


def interval_ms(spec: RateLimitSpec) -> int:
    return max(1, math.ceil(spec.period_s * 1000 / spec.limit))


def rule_of(spec: RateLimitSpec, key: str, app: str) -> Rule:
    t = interval_ms(spec)
    burst = spec.burst or 1
    per = {"app": "", "account": " per account", "tenant": " per tenant"}[spec.scope]
    path = f" on {spec.path}" if spec.path else ""
    return Rule(
        key=key,
        interval_ms=t,
        tolerance_ms=(burst - 1) * t,
        label=f"{app}: {spec.limit:g} per {spec.period_s:g} s{per}{path}",
    )


def limit_key(app: str, index: int, spec: RateLimitSpec, tenant_id: str, account_id: str) -> str:
    owner = {"app": "app", "account": f"acct:{account_id}", "tenant": f"tenant:{tenant_id}"}
    return f"{KEY_PREFIX}:{app}:{index}:{owner[spec.scope]}"


def pause_key(app: App, account_id: str) -> str:
    """Where a pause asked by the upstream is kept: per account unless every limit the app
    declares is app-wide (then the upstream counts per app, and so does the pause)."""
    if app.rate_limits and all(r.scope == "app" for r in app.rate_limits):
        return f"{KEY_PREFIX}:pause:{app.slug}:app"
    return f"{KEY_PREFIX}:pause:{app.slug}:acct:{account_id}"


@dataclass(frozen=True, slots=True)
class KeyOf:
    """What a key of the limiter belongs to, read back from the key (for reports)."""

    kind: str  # "limit" (an app's declared limit), "pause" or "tenant-cap"
    app: str | None = None
    index: int | None = None  # which of the app's `rate_limits`, for a limit


def key_of(key: str) -> KeyOf | None:
    """Parse a key made by `limit_key`, `pause_key` or `tenant_cap_rule`; None for any
    other key."""
    prefix = KEY_PREFIX + ":"
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix) :].split(":")
    if parts[0] == "pause" and len(parts) >= 3:
        return KeyOf("pause", parts[1])
    if parts[0] == "tenant-cap":
        return KeyOf("tenant-cap")
    if len(parts) >= 3 and parts[1].isdigit():
        return KeyOf("limit", parts[0], int(parts[1]))
    return None


LANES = ("interactive", "bulk")


def tenant_cap_rule(cap: RateLimitSpec, tenant_id: str, lane: str) -> Rule:
    """The operator's cap on one tenant's calls across all its apps, per lane: a tenant's
    single calls never wait behind its own batches."""
    t = interval_ms(cap)
    return Rule(
        key=f"{KEY_PREFIX}:tenant-cap:{tenant_id}:{lane}",
        interval_ms=t,
        tolerance_ms=((cap.burst or 1) - 1) * t,
        label=f"tenant cap ({lane}): {cap.limit:g} per {cap.period_s:g} s",
    )


def parse_rate(text: str) -> RateLimitSpec | None:
    """`"100/1"` (100 calls per second) or `"100/1/20"` (with a burst of 20); "" is none."""
    if not text.strip():
        return None
    parts = text.strip().split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"{text!r}: write N/SECONDS or N/SECONDS/BURST, e.g. 100/1")
    try:
        limit, period = int(parts[0]), float(parts[1])
        burst = int(parts[2]) if len(parts) == 3 else None
        return RateLimitSpec(scope="tenant", limit=limit, period_s=period, burst=burst)
    except ValueError as exc:
        raise ValueError(f"{text!r}: write N/SECONDS or N/SECONDS/BURST, e.g. 100/1") from exc


def rules_for(
    app: App,
    *,
    tenant_id: str,
    account_id: str,
    path: str,
    tenant_cap: RateLimitSpec | None = None,
    lane: str = "interactive",
) -> list[Rule]:
    """The limits one call to `path` falls under: the app's, in catalog order, then the
    operator's cap on the tenant."""
    rules = []
    for index, spec in enumerate(app.rate_limits):
        if spec.path and not re.search(spec.path, path):
            continue
        key = limit_key(app.slug, index, spec, tenant_id, account_id)
        rules.append(rule_of(spec, key, app.slug))
    if tenant_cap is not None:
        rules.append(tenant_cap_rule(tenant_cap, tenant_id, lane))
    return rules


def book(
    rules: list[Rule],
    tats_ms: list[int | None],
    *,
    now_ms: int,
    paused_until_ms: int | None,
    near_ms: int,
    horizon_ms: int,
) -> Booking:
    """The reserving GCRA step for one call (the Lua script mirrors it line for line).

    A slot within `near_ms` is booked on every rule. A farther one (within the horizon) is
    booked only on the rules that are themselves that far behind: a looser rule shared with
    other calls (an account-wide limit, the tenant cap) is booked when the call comes back
    near its slot, so one key's backlog never pushes the looser rule's TAT far ahead and
    holds back calls that only share that rule. Beyond the horizon nothing is booked.
    """
    start = max(now_ms, paused_until_ms or 0)
    slot, reason = start, None
    if start > now_ms:
        reason = "paused by the upstream"
    own = [
        (tat - rule.tolerance_ms) if tat is not None else None
        for rule, tat in zip(rules, tats_ms, strict=True)
    ]
    for rule, at in zip(rules, own, strict=True):
        if at is not None and at > slot:
            slot, reason = at, rule.label
    if slot - now_ms <= near_ms:
        take = [True] * len(rules)
    elif slot - now_ms <= horizon_ms:
        take = [at is not None and at - now_ms > near_ms for at in own]
    else:
        take = [False] * len(rules)
    new_tats = tuple(
        max(tat if tat is not None else slot, slot) + rule.interval_ms if taken else None
        for rule, tat, taken in zip(rules, tats_ms, take, strict=True)
    )
    return Booking(slot, now_ms, tuple(take), reason, new_tats)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one limit looks like now."""

    booked_ahead: int  # calls holding slots from now on, burst included
    next_free_ms: int  # how long until a new call could go (0: at once)


def usage(rule: Rule, tat_ms: int | None, now_ms: int) -> Usage:
    if tat_ms is None or tat_ms <= now_ms:
        return Usage(0, 0)
    ahead = math.ceil((tat_ms - now_ms) / rule.interval_ms)
    return Usage(ahead, max(0, tat_ms - rule.tolerance_ms - now_ms))
