"""Retention: finished calls older than PASSTHRU_RETENTION_DAYS are deleted, with their
attempts and webhook deliveries, a few hundred at a time (short transactions, so the log
stays writable while a large backlog of old calls goes)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select

from models.calls.states import FINAL
from models.db.tables import (
    CallAttempt,
    ConnectSession,
    FunctionCall,
    WebhookAttempt,
    WebhookDelivery,
)

log = logging.getLogger("passthru.retention")

_calls = FunctionCall.__table__  # type: ignore[attr-defined]
_attempts = CallAttempt.__table__  # type: ignore[attr-defined]
_deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
_webhook_attempts = WebhookAttempt.__table__  # type: ignore[attr-defined]
_links = ConnectSession.__table__  # type: ignore[attr-defined]
RETENTION_BATCH = 500
# One run deletes at most this many calls; the next run goes on.
MAX_PER_RUN = 50_000


def purge(engine: Engine, now: datetime, days: float, batch: int = RETENTION_BATCH) -> int:
    """Delete finished calls created before `now - days`; return how many went."""
    if days <= 0:
        return 0
    cutoff = now - timedelta(days=days)
    total = 0
    while total < MAX_PER_RUN:
        with engine.begin() as conn:
            ids = list(
                conn.execute(
                    select(_calls.c.id)
                    .where(
                        _calls.c.created_at < cutoff,
                        _calls.c.status.in_([s.value for s in FINAL]),
                    )
                    .order_by(_calls.c.id)
                    .limit(batch)
                ).scalars()
            )
            if not ids:
                break
            deliveries = select(_deliveries.c.id).where(_deliveries.c.call_id.in_(ids))
            conn.execute(
                delete(_webhook_attempts).where(_webhook_attempts.c.delivery_id.in_(deliveries))
            )
            conn.execute(delete(_deliveries).where(_deliveries.c.call_id.in_(ids)))
            conn.execute(delete(_attempts).where(_attempts.c.call_id.in_(ids)))
            conn.execute(delete(_calls).where(_calls.c.id.in_(ids)))
        total += len(ids)
    if total:
        log.info("retention: %d calls older than %g days deleted", total, days)
    return total


# Links of POST /connect-sessions are deleted this long after they expired (their page then
# says "unknown link" instead of "expired").
CONNECT_LINKS_KEPT = timedelta(hours=1)


def purge_connect_links(engine: Engine, now: datetime) -> int:
    """Delete connect links expired more than CONNECT_LINKS_KEPT ago; return how many went."""
    with engine.begin() as conn:
        gone = conn.execute(
            delete(_links).where(_links.c.expires_at < now - CONNECT_LINKS_KEPT)
        ).rowcount
    if gone:
        log.info("retention: %d expired connect links deleted", gone)
    return int(gone or 0)
