"""The webhook-delivery state machine: `DELIVERIES` checks every status change, and builds the
guard of every status UPDATE (models/machine.py).

  pending ──> delivering ──> succeeded
     ^             │   └───> failed    no attempts left, 410 Gone, or it cannot be sent
     └─────────────┘   another attempt later; or its lease ran out (its worker died)
  pending | succeeded | failed ──> pending   redelivered (POST .../redeliver): due now

Only the claim moves a delivery to `delivering`, and nothing moves it from there to itself:
one attempt of a delivery is in flight at most.

An event for the tenant's endpoint (`to_endpoint`) goes where the endpoint is when each
attempt is prepared. With no enabled endpoint then (its URL cleared, or disabled by a 410),
the attempt is not sent: it is recorded saying so and the delivery ends `failed`, like any
delivery that cannot be sent; a redelivery once an endpoint is set sends it there.
"""

from __future__ import annotations

from enum import StrEnum

from models.machine import StateMachine


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


DELIVERIES = StateMachine(
    "webhook delivery",
    {
        DeliveryStatus.PENDING: {DeliveryStatus.DELIVERING, DeliveryStatus.PENDING},
        DeliveryStatus.DELIVERING: {
            DeliveryStatus.SUCCEEDED,
            DeliveryStatus.FAILED,
            DeliveryStatus.PENDING,
        },
        DeliveryStatus.SUCCEEDED: {DeliveryStatus.PENDING},
        DeliveryStatus.FAILED: {DeliveryStatus.PENDING},
    },
)

# Deliveries whose last attempt ended them (until they are redelivered).
ENDED = frozenset({DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED})
# Deliveries a tenant may send again: any not in flight.
REDELIVERABLE = (DeliveryStatus.PENDING, DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED)
