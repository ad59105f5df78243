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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from models.catalog import Catalog, RateLimitSpec
from models.limits import pause_key, rules_for
from worker.claim import Claimed
from worker.limiter import Ask, Limiter
from worker.onward import OnwardRequest

LOOP_WAIT_S = 2.0
COME_BACK_EARLY_S = 1.0
HORIZON_S = 120.0


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


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path or "/"


def prepaid(c: Claimed) -> tuple[datetime, int, str | None] | None:
    """The slot this call booked before it was handed back: (slot, wait in ms, reason)."""
    wait = c.call.rate_wait
    if not wait or "slot_at" not in wait:
        return None
    slot = datetime.fromisoformat(wait["slot_at"])
    booked = datetime.fromisoformat(wait.get("booked_at", wait["slot_at"]))
    return slot, int((slot - booked).total_seconds() * 1000), wait.get("reason")


def plan(
    items: Sequence[tuple[Claimed, OnwardRequest]],
    *,
    limiter: Limiter | None,
    catalog: Catalog,
    clock: Callable[[], datetime],
    tenant_cap: RateLimitSpec | None = None,
) -> Plan:
    """Slots are turned into local times with the clock read right at booking, so time
    spent before (claiming, decrypting) never makes a call go early."""
    if limiter is None:
        return Plan([Go(c, r, 0.0, None, None) for c, r in items], [])
    go: list[Go] = []
    park: list[Park] = []
    to_book: list[tuple[Claimed, OnwardRequest]] = []
    asks: list[Ask] = []
    now = clock()
    for c, r in items:
        app = catalog.get(c.call.app)
        # Prepared calls have both.
        assert app is not None
        assert c.account is not None
        key = pause_key(app, c.account.id)
        r = _with_pause_key(r, key)
        if (kept := prepaid(c)) is not None:
            slot, wait_ms, reason = kept
            delay = (slot - now).total_seconds()
            if delay > LOOP_WAIT_S:  # came back too early: keep waiting, slot kept
                park.append(Park(c, slot - timedelta(seconds=COME_BACK_EARLY_S), c.call.rate_wait))
            else:
                # Even a late one waited: it is checked against pauses before it goes.
                go.append(Go(c, r, max(delay, 0.001), wait_ms, reason))
            continue
        rules = rules_for(
            app,
            tenant_id=c.call.tenant_id,
            account_id=c.account.id,
            path=_path(c.call.url),
            tenant_cap=tenant_cap,
        )
        to_book.append((c, r))
        asks.append(Ask(rules, key))
    bookings = limiter.book_many(asks, horizon_ms=int(HORIZON_S * 1000))
    now = clock()  # after the round trip: a slot read against it is never early
    for (c, r), b in zip(to_book, bookings, strict=True):
        wait_s = b.wait_ms / 1000
        slot = now + timedelta(seconds=wait_s)
        if b.booked and wait_s <= LOOP_WAIT_S:
            go.append(Go(c, r, wait_s, b.wait_ms or None, b.reason))
        elif b.booked:
            held_slot = {
                "slot_at": slot.isoformat(),
                "booked_at": now.isoformat(),
                "reason": b.reason,
            }
            park.append(Park(c, slot - timedelta(seconds=COME_BACK_EARLY_S), held_slot))
        else:
            park.append(Park(c, slot - timedelta(seconds=HORIZON_S / 2), None))
    return Plan(go, park)


def _with_pause_key(request: OnwardRequest, key: str) -> OnwardRequest:
    from dataclasses import replace

    return replace(request, pause_key=key)
