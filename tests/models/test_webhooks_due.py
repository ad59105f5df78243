"""Webhook deliveries due now, tenant by tenant (models/webhooks/due.py), against a real
redis-server."""

from __future__ import annotations

import redis

from models.interactive_due import UNKNOWN_TENANT, Due, Taken
from models.keys import HOOKS_DUE_OF_PREFIX
from models.webhooks.due import UNKNOWN_CHUNK, DeliveriesDue, one_tenant


def test_deliveries_are_taken_tenant_after_tenant_and_held_nowhere(
    redis_client: redis.Redis,
) -> None:
    due = DeliveriesDue(redis_client)
    due.push(["msg_a1", "msg_a2", "msg_a3"], one_tenant(["msg_a1", "msg_a2", "msg_a3"], "tn_a"))
    due.push(["msg_b1"], {"msg_b1": "tn_b"})
    assert due.tenants() == {"tn_a", "tn_b"}
    taken = [due.take_one() for _ in range(4)]
    assert taken == [
        Taken("tn_a", "msg_a1"),
        Taken("tn_b", "msg_b1"),
        Taken("tn_a", "msg_a2"),
        Taken("tn_a", "msg_a3"),
    ]
    assert due.take_one() is Due.NOTHING
    assert due.tenants() == set()
    # Nothing taken is kept anywhere: the lists and the turn are all that existed
    assert redis_client.keys("*") == []


def test_a_tenant_the_sender_is_full_for_is_skipped_and_keeps_its_deliveries(
    redis_client: redis.Redis,
) -> None:
    due = DeliveriesDue(redis_client)
    due.push(["msg_a1", "msg_a2"], one_tenant(["msg_a1", "msg_a2"], "tn_a"))
    due.push(["msg_b1"], {"msg_b1": "tn_b"})
    assert due.take_one({"tn_a"}) == Taken("tn_b", "msg_b1")
    assert due.take_one({"tn_a"}) is Due.SKIPPED
    assert redis_client.lrange(f"{HOOKS_DUE_OF_PREFIX}tn_a", 0, -1) == [b"msg_a1", b"msg_a2"]
    assert due.take_one() == Taken("tn_a", "msg_a1")


def test_deliveries_without_a_tenant_wait_together_in_chunks(redis_client: redis.Redis) -> None:
    due = DeliveriesDue(redis_client)
    ids = [f"msg_{n}" for n in range(UNKNOWN_CHUNK + 1)]
    due.push(ids, {})
    first, second = due.take_one(), due.take_one()
    assert isinstance(first, Taken)
    assert isinstance(second, Taken)
    assert first.tenant_id == second.tenant_id == UNKNOWN_TENANT
    assert first.call_id.split(",") + second.call_id.split(",") == ids
    assert due.depth() == 0
