"""Webhook deliveries due now, kept in Redis tenant by tenant, for each worker process's
webhook sender to take whenever it has room (worker/webhooks/puller.py).

A burst (a batch of 20,000 calls ending, each with an event) waits here, ids only, and is
taken as fast as the receivers answer: no delivery goes round the broker again because a
sender was full, and a tenant whose receiver is slow never holds another tenant's events
back, since a sender skips the tenants it has no room for and takes the next one's.

Ids whose tenant the publisher does not know wait together, comma-joined, in the
UNKNOWN_TENANT bucket; the sender that takes them reads their tenants and hands them over
or sends them to their tenants' lists (worker/webhooks/deliveries.py: `deliver`).

A taken id is held nowhere: the delivery stays `pending` until it is claimed. One that
cannot be handed over is put back at the head of its list; one whose process dies between
the take and the claim is published again by the sweeper (worker/webhooks/recovery.py):
after PASSTHRU_REPUBLISH_AFTER_S, or, while its tenant has deliveries waiting (where it is
most likely to be), after an hour (worker/webhooks/recovery.py: WAITING_LIMIT_S).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import redis

from models.interactive_due import (
    UNKNOWN_TENANT,
    Due,
    Taken,
    TenantLists,
    as_text,
    by_tenant,
)
from models.keys import HOOKS_DUE_OF_PREFIX, HOOKS_DUE_TENANTS

# Ids of the unknown tenant's bucket per item.
UNKNOWN_CHUNK = 100


class DeliveriesDue(TenantLists):
    """Webhook deliveries due now: a delivery id per item (the unknown tenant's: up to
    UNKNOWN_CHUNK of them per item, joined by commas)."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, HOOKS_DUE_TENANTS, HOOKS_DUE_OF_PREFIX)

    def push(self, delivery_ids: Sequence[str], tenant_of: Mapping[str, str]) -> None:
        """Append `delivery_ids` to their tenants' lists."""
        lists = by_tenant(delivery_ids, tenant_of)
        unknown = lists.pop(UNKNOWN_TENANT, [])
        if unknown:
            lists[UNKNOWN_TENANT] = [
                ",".join(unknown[i : i + UNKNOWN_CHUNK])
                for i in range(0, len(unknown), UNKNOWN_CHUNK)
            ]
        if lists:
            self.push_items(lists)

    def take_one(self, skip: Collection[str] = ()) -> Taken | Due:
        """The next tenant's oldest delivery (the unknown tenant's: a chunk of ids), skipping
        the tenants in `skip`."""
        return self.take("", skip)

    def put_back(self, taken: Taken) -> None:
        """Put a taken item back at the head of its tenant's list (it was not handed over)."""
        self.push_items({taken.tenant_id: [taken.call_id]}, first=True)

    def tenants(self) -> set[str]:
        """The tenants with deliveries waiting."""
        return {as_text(t) for t in self._client.lrange(self._turn_key, 0, -1)}


def one_tenant(delivery_ids: Sequence[str], tenant_id: str) -> dict[str, str]:
    """`tenant_of` for deliveries that are all one tenant's."""
    return dict.fromkeys(delivery_ids, tenant_id)
