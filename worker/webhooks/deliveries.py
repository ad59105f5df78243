"""Deliver webhook events: claim, sign, hand the POST to the webhook sender, record the
attempt, schedule the next one.

Each attempt goes where the delivery points when it is prepared (`events.target`): a
call's own `callback_url`, or the tenant's webhook endpoint as it is then, so attempts
follow the tenant's PUT /webhook-endpoint and a URL it replaced gets nothing more.

2xx: delivered. 410 Gone: the receiver asked to stop; a tenant endpoint is disabled, if the
URL that answered is still its URL (else the attempt is retried, at the URL it has now). Any
other answer, a timeout or a connection failure: tried again after the next delay of the
schedule (PASSTHRU_WEBHOOK_SCHEDULE_S); after the last one the delivery is `failed`. Each
message keeps its `webhook-id` across attempts, so a receiver can process it once.

A delivery that cannot be attempted at all (its URL is not one the worker can send to, its
call is gone, its signing secret cannot be decrypted, its tenant has no enabled endpoint
any more) records a failed attempt saying why and ends `failed`: it never loops, and a
redelivery sends it again. Only one attempt of a delivery is ever in flight: the claim
moves it from `pending` to `delivering`, and nothing else does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import SQLAlchemyError

from models.broker import Publisher
from models.crypto.secrets import Vault
from models.db.engine import read_connection, single_write
from models.db.tables import FunctionCall, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from models.webhooks.publish import publish_deliveries_or_forget
from models.webhooks.states import DELIVERIES, ENDED, DeliveryStatus
from worker.webhooks.decision import decide, log_attempt, soon
from worker.webhooks.events import Unsendable, prepare, read
from worker.webhooks.sender import ERROR_CHARS, PENDING_PER_SLOT, Poster, Prepared, Sent

log = logging.getLogger("passthru.webhooks")

_deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
_attempts = WebhookAttempt.__table__  # type: ignore[attr-defined]
_endpoints = WebhookEndpoint.__table__  # type: ignore[attr-defined]
_calls = FunctionCall.__table__  # type: ignore[attr-defined]
DECISION_CHARS = 200


@dataclass(frozen=True)
class WebhookRuntime:
    engine: Engine
    vault: Vault
    poster: Poster
    schedule_s: list[float]
    clock: Callable[[], datetime]
    # Publishes retries, and deliveries the sender has no room for onto their tenants' lists
    # (`NoPublisher`: the sweeper publishes them).
    publisher: Publisher
    # How long a claimed delivery is this worker's: longer than it may wait for a slot and
    # then attempt (lease_for()).
    lease_s: float


def lease_for(timeout_s: float) -> float:
    """A delivery's lease: its attempt's deadline once for each delivery that may wait
    ahead of it for the same slot, and a minute to spare."""
    return timeout_s * (PENDING_PER_SLOT + 1) + 60.0


def deliver(
    delivery_ids: Sequence[str], rt: WebhookRuntime, tenant_of: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Claim each due delivery among `delivery_ids` and hand it to the sender, which signs
    and sends it when a slot is free (its body is built then, so waiting deliveries hold no
    payload). Returns the status of each one claimed: its outcome when known already, else
    `delivering`. Those the sender has no room for, in all or for their tenant, go to their
    tenants' lists unclaimed, to be taken when it has (models/webhooks/due.py).
    `tenant_of`: each delivery's tenant, when the caller knows them (else they are read)."""
    out: dict[str, str] = {}
    later: list[str] = []
    tenants = _tenants_of(rt.engine, delivery_ids) if tenant_of is None else tenant_of
    for delivery_id in delivery_ids:
        tenant_id = tenants.get(delivery_id)
        if tenant_id is None:
            continue  # gone
        if rt.poster.room(tenant_id) <= 0:
            later.append(delivery_id)
            continue
        delivery = _claim(rt, delivery_id)
        if delivery is None:
            continue
        out[delivery_id] = DeliveryStatus.DELIVERING
        attempt = _Attempt(rt, delivery, rt.clock(), out)
        rt.poster.post(delivery.id, delivery.tenant_id, attempt.prepare, attempt.ended)
    if later:
        log.debug("webhook sender full for their tenants: %d deliveries wait in turn", len(later))
        publish_deliveries_or_forget(rt.engine, rt.publisher, later, {i: tenants[i] for i in later})
    return out


def _tenants_of(engine: Engine, delivery_ids: Sequence[str]) -> dict[str, str]:
    """Each delivery's tenant, in one read (deliveries that are gone are left out)."""
    if not delivery_ids:
        return {}
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(_deliveries.c.id, _deliveries.c.tenant_id).where(
                _deliveries.c.id.in_(list(delivery_ids))
            )
        )
        return {row.id: row.tenant_id for row in rows}


@dataclass
class _Attempt:
    """One attempt of a claimed delivery: aimed and signed once it has a slot (`prepare`),
    recorded when it ends (`ended`), its status then put in `statuses`."""

    rt: WebhookRuntime
    delivery: WebhookDelivery
    started: datetime
    statuses: dict[str, str]
    # Where it goes, as stored: set by `prepare` (None before, or when it has nowhere to go).
    to: str | None = None

    def prepare(self) -> Prepared:
        stored = read(self.rt.engine, self.delivery)
        self.to = stored.to
        return prepare(self.rt.engine, self.rt.vault, self.rt.clock, self.delivery, stored)

    def ended(self, outcome: Sent | Exception) -> DeliveryStatus | None:
        """Record how the attempt ended: what the receiver answered, or why there was no
        attempt. None when nothing could be recorded (the lease brings the delivery back)."""
        if isinstance(outcome, Sent):
            status = self._store(outcome)
        elif isinstance(outcome, Unsendable):
            status = self._store(Sent(None, str(outcome), 0), last=True)
        else:
            # The database, while preparing: recorded if it lets us (retried on the schedule).
            why = f"could not be prepared: {type(outcome).__name__}"
            try:
                status = self._store(Sent(None, why, 0))
            except SQLAlchemyError:
                log.warning("webhook %s: %s; left to the sweeper", self.delivery.id, why)
                return None
        self.statuses[self.delivery.id] = status
        return status

    def _store(self, sent: Sent, *, last: bool = False) -> DeliveryStatus:
        return _record(self.rt, self.delivery, self.started, sent, to=self.to, last=last)


def _claim(rt: WebhookRuntime, delivery_id: str) -> WebhookDelivery | None:
    now = rt.clock()
    with single_write(rt.engine) as conn:  # one statement: on Postgres, no BEGIN, no COMMIT
        row = conn.execute(
            DELIVERIES.update(
                _deliveries,
                DeliveryStatus.DELIVERING,
                _deliveries.c.id == delivery_id,
                _deliveries.c.next_attempt_at <= now,
            )
            .values(
                lease_expires_at=now + timedelta(seconds=rt.lease_s),
                attempt_count=_deliveries.c.attempt_count + 1,
            )
            .returning(*_deliveries.c)
        ).first()
    return WebhookDelivery(**row._mapping) if row is not None else None


def _record(
    rt: WebhookRuntime,
    delivery: WebhookDelivery,
    started: datetime,
    sent: Sent,
    *,
    to: str | None,
    last: bool = False,
) -> DeliveryStatus:
    """Store one attempt and what follows from it; returns the delivery's new status.
    `to`: where the attempt went, as stored (None: nowhere, its URL is left as it was).
    `last`: no attempt may follow (the delivery cannot be attempted at all)."""
    code, error = sent.status_code, (sent.error or None)
    with rt.engine.begin() as conn:
        # A 410 stops the endpoint only from the URL it has now: one the tenant replaced
        # while the attempt was on its way says nothing about the new one.
        gone = code == 410 and (
            not delivery.to_endpoint or _disable_endpoint(conn, delivery, to, started)
        )
        status, decision, next_at = decide(
            rt.schedule_s, delivery, code, error, started, last=last, gone=gone
        )
        conn.execute(
            _attempts.insert().values(
                delivery_id=delivery.id,
                number=delivery.attempt_count,
                started_at=started,
                duration_ms=sent.duration_ms,
                status_code=code,
                error=error[:ERROR_CHARS] if error else None,
                decision=decision[:DECISION_CHARS],
                url=to,
            )
        )
        # Nothing changes if the lease ran out meanwhile (the sweeper took it back).
        conn.execute(
            DELIVERIES.update(
                _deliveries,
                status,
                _deliveries.c.id == delivery.id,
                current=DeliveryStatus.DELIVERING,
            ).values(
                url=to or delivery.url,
                next_attempt_at=next_at,
                published_at=next_at if soon(next_at, started) else None,
                lease_expires_at=None,
                finished_at=started if status in ENDED else None,
            )
        )
    log_attempt(delivery, status, decision, sent)
    if next_at is not None and soon(next_at, started):
        publish_deliveries_or_forget(
            rt.engine,
            rt.publisher,
            [delivery.id],
            {delivery.id: delivery.tenant_id},
            max(0.0, (next_at - started).total_seconds()),
        )
    return status


def _disable_endpoint(
    conn: Connection, delivery: WebhookDelivery, url: str | None, now: datetime
) -> bool:
    """Disable the tenant's endpoint if `url`, which answered 410 Gone, is its URL now;
    whether it was."""
    if url is None:
        return False
    disabled = conn.execute(
        update(_endpoints)
        .where(_endpoints.c.tenant_id == delivery.tenant_id, _endpoints.c.url == url)
        .values(disabled_at=now, disabled_reason="the endpoint answered 410 Gone")
    ).rowcount
    if disabled:
        log.warning("tenant %s: webhook endpoint disabled (410 Gone)", delivery.tenant_id)
    return bool(disabled)
