"""Hand calls back unsent (not an attempt) when their rate-limit slot is too far off to wait
in the event loop: `queued` again, or `retrying` after earlier attempts, each due at its
slot, then published to come back just before it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, Engine, bindparam, case, func

from models.broker import MAX_COUNTDOWN_S, Publisher
from models.calls.states import CALLS, CallStatus
from models.db.engine import UTCDateTime
from models.db.tables import FunctionCall
from worker import metrics
from worker.calls.results import lane_of
from worker.calls.store import HANDED_BACK, publish_or_forget, still_ours
from worker.ratelimit.admission import Park

_calls = FunctionCall.__table__  # type: ignore[attr-defined]

_HAND_BACK = (
    _calls.update()
    .where(*still_ours(*HANDED_BACK))
    .values(
        status=bindparam("b_status"),
        attempt_count=_calls.c.attempt_count - 1,
        lease_expires_at=None,
        next_attempt_at=bindparam("b_next_attempt_at", type_=UTCDateTime()),
        rate_wait=bindparam("b_rate_wait", type_=JSON()),
        started_at=case((bindparam("b_first", type_=Boolean()), None), else_=_calls.c.started_at),
        published_at=func.coalesce(
            bindparam("b_published_at", type_=UTCDateTime()), _calls.c.published_at
        ),
    )
)


def mark_handed_back(engine: Engine, items: Sequence[Park], now: datetime) -> set[str]:
    """Store each call as handed back, due at its `come_back_at`. Those due within
    MAX_COUNTDOWN_S count as published for that time (`hand_back` publishes them with a
    countdown); later ones keep their old `published_at`, so the sweeper publishes them when
    due. Returns the ids that were still ours."""
    if not items:
        return set()
    rows: list[dict[str, Any]] = []
    for item in items:
        c = item.claimed
        soon = (item.come_back_at - now).total_seconds() <= MAX_COUNTDOWN_S
        rows.append(
            {
                "b_id": c.call.id,
                "b_attempt": c.attempt,
                "b_status": CALLS.check(
                    CallStatus.RUNNING,
                    CallStatus.QUEUED if c.attempt == 1 else CallStatus.RETRYING,
                ),
                "b_next_attempt_at": item.come_back_at,
                "b_rate_wait": item.rate_wait,
                "b_first": c.attempt == 1,
                "b_published_at": item.come_back_at if soon else None,
            }
        )
    ours: set[str] = set()
    with engine.begin() as conn:
        for row in rows:
            if conn.execute(_HAND_BACK, row).rowcount == 1:
                ours.add(str(row["b_id"]))
    return ours


def hand_back(engine: Engine, items: list[Park], now: datetime, publisher: Publisher) -> None:
    """Hand calls back, each to come back for its slot; publish the ones due soon, in one
    message per lane and second of return: a backlog of one key is a few messages a second,
    not one per call."""
    if not items:
        return
    items = [on_the_second(item, now) for item in items]
    handed_back = mark_handed_back(engine, items, now)
    groups: dict[tuple[str, int], list[str]] = {}
    tenant_of = {item.claimed.call.id: item.claimed.call.tenant_id for item in items}
    for item in items:
        metrics.HANDED_BACK.labels(item.claimed.call.app).inc()
        countdown = round((item.come_back_at - now).total_seconds())
        if item.claimed.call.id in handed_back and countdown <= MAX_COUNTDOWN_S:
            groups.setdefault((lane_of(item.claimed), countdown), []).append(item.claimed.call.id)
    for (lane, countdown), ids in sorted(groups.items()):
        publish_or_forget(engine, publisher, ids, lane, countdown, tenant_of)


def on_the_second(item: Park, now: datetime) -> Park:
    """The call due back a whole number of seconds from `now`, rounded down (never later
    than asked, so a call back for its booked slot meets it with time to spare, and never
    before the time it is stored as due, so its message finds it claimable)."""
    countdown = (item.come_back_at - now).total_seconds()
    if countdown > MAX_COUNTDOWN_S:
        return item
    return replace(item, come_back_at=now + timedelta(seconds=max(0, math.floor(countdown))))
