"""Rate-limit admission for the calls of one message: which go now, which go after a short
wait inside the event loop, and which are handed back to wait without holding anything.

Every call books its slot with the global limiter (one round trip for the whole message):
- a slot within LOOP_WAIT_S: the request is handed to the sender with that delay (a timer in
  the event loop, no connection, no thread of its own);
- a slot further out but within the horizon: the call keeps its booked slot ("prepaid"),
  goes back to `queued`/`retrying` and is published to come back COME_BACK_EARLY_S before
  it, then waits the rest in the loop;
- a slot beyond the horizon: nothing is booked; the call comes back when the horizon
  reaches its slot and books again.
So a backlog of one limited key costs one booking per call, never a poll per slot, and the
worker's threads and connections stay free for every other key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from models.catalog.apps import Catalog
from models.catalog.spec import RateLimitSpec
from models.net.urls import limit_path
from models.ratelimit.rules import Booking, pause_key, rules_for
from models.ratelimit.store import Ask, Limiter
from worker.calls.claim import Claimed
from worker.calls.onward import OnwardRequest

LOOP_WAIT_S = 2.0
COME_BACK_EARLY_S = 1.0
HORIZON_S = 120.0
# A call back this long after the slot it kept (its message late: a busy worker, its turn
# behind other tenants') books again: sent now on a slot long past, it would go beside the
# calls booked for now, past the limit.
STALE_AFTER_S = 1.0


@dataclass(frozen=True, slots=True)
class Go:
    claimed: Claimed
    request: OnwardRequest
    delay_s: float  # from now
    wait_ms: int | None  # how long rate limits held it back in all (None: not at all)
    reason: str | None


@dataclass(frozen=True, slots=True)
class Park:
    claimed: Claimed
    come_back_at: datetime
    rate_wait: dict[str, Any] | None  # the booked slot it keeps, if any


@dataclass(frozen=True, slots=True)
class Plan:
    go: list[Go]
    park: list[Park]


@dataclass(frozen=True, slots=True)
class Held:
    """What a handed-back call keeps: the slot it waits for and the limits it booked."""

    slot_at: datetime
    booked_at: datetime  # when it first started waiting
    reason: str | None
    paid: frozenset[str]  # keys of the limits already booked for that slot

    @staticmethod
    def of(c: Claimed) -> Held | None:
        wait = c.call.rate_wait
        if not wait or "slot_at" not in wait:
            return None
        return Held(
            datetime.fromisoformat(wait["slot_at"]),
            datetime.fromisoformat(wait.get("booked_at", wait["slot_at"])),
            wait.get("reason"),
            frozenset(wait.get("paid", ())),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "slot_at": self.slot_at.isoformat(),
            "booked_at": self.booked_at.isoformat(),
            "reason": self.reason,
            "paid": sorted(self.paid),
        }


def plan(
    items: Sequence[tuple[Claimed, OnwardRequest]],
    *,
    limiter: Limiter,
    catalog: Catalog,
    clock: Callable[[], datetime],
    tenant_cap: RateLimitSpec | None = None,
) -> Plan:
    """Book every call's slot in one round trip, then place each call: go now, go after a
    wait in the loop, or be handed back. Slots are turned into local times with the clock
    read right after booking, so time spent before (claiming, decrypting) never makes a call
    go early."""
    before = clock()
    asks = [_ask(c, catalog, tenant_cap, before) for c, _ in items]
    bookings = limiter.book_many(
        [a for a, _ in asks], near_ms=int(LOOP_WAIT_S * 1000), horizon_ms=int(HORIZON_S * 1000)
    )
    now = clock()  # after the round trip: a slot read against it is never early
    out = Plan([], [])
    for (c, r), (ask, kept), b in zip(items, asks, bookings, strict=True):
        placed = _place(c, replace(r, pause_key=ask.pause_key), ask, kept, b, now)
        if isinstance(placed, Go):
            out.go.append(placed)
        else:
            out.park.append(placed)
    return out


def _ask(
    c: Claimed, catalog: Catalog, tenant_cap: RateLimitSpec | None, now: datetime
) -> tuple[Ask, Held | None]:
    """What to book for a call (only what is still unpaid, for a call back for a slot booked
    earlier, unless that slot is long past), and what it kept from then."""
    app = catalog.get(c.call.app)
    if app is None or c.account is None:
        raise ValueError(f"call {c.call.id} has no app or account: it cannot be admitted")
    kept = Held.of(c)
    if kept is not None and kept.slot_at < now - timedelta(seconds=STALE_AFTER_S):
        kept = replace(kept, paid=frozenset())  # its wait so far still counts
    rules = rules_for(
        app,
        tenant_id=c.call.tenant_id,
        account_id=c.account.id,
        # Parsed only when one of the app's limits names a path: it is a URL parse per call.
        path=limit_path(c.call.url) if any(s.path for s in app.rate_limits) else "",
        tenant_cap=tenant_cap,
        lane="bulk" if c.call.batch_id else "interactive",
    )
    if kept is not None:
        rules = [rule for rule in rules if rule.key not in kept.paid]
    return Ask(rules, pause_key(app, c.account.id)), kept


def _place(
    c: Claimed, request: OnwardRequest, ask: Ask, kept: Held | None, b: Booking, now: datetime
) -> Go | Park:
    slot = now + timedelta(milliseconds=b.wait_ms)
    reason = b.reason
    if kept is not None and kept.slot_at > slot:
        slot, reason = kept.slot_at, kept.reason
    since = kept.booked_at if kept is not None else now
    wait_ms = int((slot - since).total_seconds() * 1000)
    paid = (kept.paid if kept else frozenset()) | {
        rule.key for rule, taken in zip(ask.rules, b.booked, strict=True) if taken
    }
    delay = (slot - now).total_seconds()
    if b.complete and delay <= LOOP_WAIT_S:
        # Even a call that waited is checked against pauses before it goes.
        waited = wait_ms > 0 or kept is not None
        return Go(c, request, max(delay, 0.001 if waited else 0.0), wait_ms or None, reason)
    if b.slot_ms - b.now_ms > HORIZON_S * 1000:
        # Nothing booked: come back when the horizon reaches the slot.
        back = slot - timedelta(seconds=HORIZON_S / 2)
        return Park(c, back, Held(slot, since, reason, paid).as_json() if paid else None)
    back = slot - timedelta(seconds=COME_BACK_EARLY_S)
    return Park(c, back, Held(slot, since, reason, paid).as_json())
