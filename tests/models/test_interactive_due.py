"""The interactive lane's calls due now, tenant by tenant: what a push and a take do to the
lists, against a real redis-server."""

from __future__ import annotations

import redis

from models.interactive_due import (
    PUSH_CHUNK,
    UNKNOWN_TENANT,
    BulkDue,
    Due,
    InteractiveDue,
    Taken,
    due_list,
    held_ids,
)
from models.keys import BULK_DUE_OF_PREFIX, BULK_DUE_TENANTS, DUE_TENANTS, LIST_INTERACTIVE

HELD = "passthru:test-held"


def _turn(client: redis.Redis) -> list[str]:
    return [t.decode() for t in client.lrange(DUE_TENANTS, 0, -1)]


def test_a_tenant_is_in_turn_once_while_it_has_calls_due(redis_client: redis.Redis) -> None:
    due = InteractiveDue(redis_client)
    due.push(["fc_1", "fc_2"], {"fc_1": "tn_a", "fc_2": "tn_a"})
    due.push(["fc_3"], {"fc_3": "tn_a"})
    assert _turn(redis_client) == ["tn_a"]
    assert due.take(HELD) == Taken("tn_a", "fc_1")
    assert due.take(HELD) == Taken("tn_a", "fc_2")
    assert due.take(HELD) == Taken("tn_a", "fc_3")
    # The last one taken takes the tenant off the turn; every id is on the held list
    assert _turn(redis_client) == []
    assert due.take(HELD) is Due.NOTHING
    assert redis_client.lrange(HELD, 0, -1) == [b"fc_1", b"fc_2", b"fc_3"]


def test_takes_go_round_the_tenants(redis_client: redis.Redis) -> None:
    due = InteractiveDue(redis_client)
    due.push(["a1", "a2", "a3"], dict.fromkeys(["a1", "a2", "a3"], "tn_a"))
    due.push(["b1"], {"b1": "tn_b"})
    due.push(["c1", "c2"], {"c1": "tn_c", "c2": "tn_c"})
    taken = [due.take(HELD) for _ in range(6)]
    assert [t.call_id for t in taken if isinstance(t, Taken)] == [
        "a1",
        "b1",
        "c1",
        "a2",
        "c2",
        "a3",
    ]
    assert due.depth() == 0


def test_a_skipped_tenant_keeps_its_calls_and_is_said_to_be_the_only_one_due(
    redis_client: redis.Redis,
) -> None:
    due = InteractiveDue(redis_client)
    due.push(["a1", "a2"], {"a1": "tn_a", "a2": "tn_a"})
    assert due.take(HELD, skip=["tn_a"]) is Due.SKIPPED
    assert due.depth() == 2
    due.push(["b1"], {"b1": "tn_b"})
    assert due.take(HELD, skip=["tn_a"]) == Taken("tn_b", "b1")
    assert due.take(HELD) == Taken("tn_a", "a1")


def test_ids_without_a_tenant_and_on_the_former_list_are_taken_too(
    redis_client: redis.Redis,
) -> None:
    due = InteractiveDue(redis_client)
    redis_client.rpush(LIST_INTERACTIVE, "old1")
    due.push(["x1"], {})
    assert redis_client.lrange(due_list(UNKNOWN_TENANT), 0, -1) == [b"x1"]
    assert due.depth() == 2
    assert due.take(HELD) == Taken(UNKNOWN_TENANT, "x1")
    assert due.take(HELD) == Taken(UNKNOWN_TENANT, "old1")  # only once no tenant has any
    assert due.take(HELD) is Due.NOTHING


def test_more_ids_than_one_script_call_takes_are_pushed_whole(redis_client: redis.Redis) -> None:
    due = InteractiveDue(redis_client)
    ids = [f"fc_{i}" for i in range(PUSH_CHUNK * 2 + 5)]
    due.push(ids, dict.fromkeys(ids, "tn_a"))
    assert redis_client.lrange(due_list("tn_a"), 0, -1) == [i.encode() for i in ids]
    assert _turn(redis_client) == ["tn_a"]


def test_a_tenant_left_in_turn_without_calls_is_dropped(redis_client: redis.Redis) -> None:
    # Given a turn holding a tenant whose list is empty (e.g. its list was deleted by hand)
    redis_client.rpush(DUE_TENANTS, "tn_gone")
    due = InteractiveDue(redis_client)
    due.push(["b1"], {"b1": "tn_b"})
    # When a take passes it, it is dropped and the next tenant's call is taken
    assert due.take(HELD) == Taken("tn_b", "b1")
    assert _turn(redis_client) == []


def test_wait_says_whether_a_call_became_due(redis_client: redis.Redis) -> None:
    due = InteractiveDue(redis_client)
    assert due.wait(1) is False
    due.push(["a1"], {"a1": "tn_a"})
    assert due.wait(1) is True
    assert due.depth() == 1  # waiting takes nothing


def test_the_scripts_are_loaded_again_after_redis_forgot_them(redis_client: redis.Redis) -> None:
    # Given the lists in use, then Redis restarted (its script cache empty)
    due = InteractiveDue(redis_client)
    due.push(["a1"], {"a1": "tn_a"})
    redis_client.script_flush()
    # Then a single push, a pipelined one and a take still work
    due.push(["a2"], {"a2": "tn_a"})
    redis_client.script_flush()
    due.push(["a3", "b1"], {"a3": "tn_a", "b1": "tn_b"})
    redis_client.script_flush()
    assert due.take(HELD) == Taken("tn_a", "a1")
    assert due.depth() == 3


def test_bulk_chunks_are_taken_in_turn_into_a_hash_of_held_messages(
    redis_client: redis.Redis,
) -> None:
    due = BulkDue(redis_client)
    ids_a = [f"a{i}" for i in range(250)]
    assert due.push(ids_a, dict.fromkeys(ids_a, "tn_a")) == 3  # 100, 100 and 50
    assert due.push(["b1", "b2"], {"b1": "tn_b", "b2": "tn_b"}) == 1
    assert due.depth() == 4
    first = due.take("passthru:test-held-hash", field="message-1", expire_s=60)
    second = due.take("passthru:test-held-hash", field="message-2", expire_s=60)
    assert first == Taken("tn_a", ",".join(ids_a[:100]))
    assert second == Taken("tn_b", "b1,b2")
    # Each chunk is the field of the message that took it, with its tenant, in a hash that
    # expires
    held = redis_client.hgetall("passthru:test-held-hash")
    assert held == {
        b"message-1": f"tn_a:{','.join(ids_a[:100])}".encode(),
        b"message-2": b"tn_b:b1,b2",
    }
    assert held_ids(held[b"message-2"]) == ["b1", "b2"]
    assert held_ids(b"c1,c2") == ["c1", "c2"]  # a Celery message's ids (worker/held.py)
    assert 0 < redis_client.ttl("passthru:test-held-hash") <= 60
    assert due.take("passthru:test-held-hash", skip=["tn_a"], field="m-3", expire_s=60) is (
        Due.SKIPPED
    )
    # The interactive lane's lists are not the bulk lane's
    assert InteractiveDue(redis_client).depth() == 0


def test_a_tenant_whose_turn_was_lost_is_put_back_in_turn_by_its_next_push(
    redis_client: redis.Redis,
) -> None:
    # Given a tenant's chunk due while the turn lost it (a key deleted, or evicted by a
    # Redis not set to noeviction)
    due = BulkDue(redis_client)
    due.push(["a1"], {"a1": "tn_a"})
    redis_client.delete(BULK_DUE_TENANTS)
    assert due.take(HELD) is Due.NOTHING
    # When its calls are pushed again (the sweeper's republish of stale calls)
    due.push(["a1"], {"a1": "tn_a"})
    # Then it is in turn again, once
    assert redis_client.lrange(BULK_DUE_TENANTS, 0, -1) == [b"tn_a"]
    assert due.take(HELD) == Taken("tn_a", "a1")
    due.push(["a2"], {"a2": "tn_a"})
    assert redis_client.lrange(BULK_DUE_TENANTS, 0, -1) == [b"tn_a"]


def test_chunks_given_back_go_to_the_head_of_their_tenants_list_and_into_the_turn(
    redis_client: redis.Redis,
) -> None:
    due = BulkDue(redis_client)
    due.push(["a1", "a2"], {"a1": "tn_a", "a2": "tn_a"})
    due.push(["b1"], {"b1": "tn_b"})
    assert due.take(HELD, field="m1", expire_s=60) == Taken("tn_a", "a1,a2")
    due.push(["a3"], {"a3": "tn_a"})
    assert due.take(HELD, field="m2", expire_s=60) == Taken("tn_b", "b1")
    # When both messages' chunks are given back (and a field that holds none)
    assert due.give_back(HELD, ["m1", "m2", "m3"]) == 2
    # Then each is first on its tenant's list again, both tenants in turn, nothing held
    assert redis_client.hlen(HELD) == 0
    assert redis_client.lrange(f"{BULK_DUE_OF_PREFIX}tn_a", 0, -1) == [b"a1,a2", b"a3"]
    assert sorted(redis_client.lrange(BULK_DUE_TENANTS, 0, -1)) == [b"tn_a", b"tn_b"]
    assert due.give_back(HELD, []) == 0


def test_chunks_pushed_first_go_ahead_of_their_tenants_others_in_their_order(
    redis_client: redis.Redis,
) -> None:
    due = BulkDue(redis_client)
    due.push(["a1", "a2"], {"a1": "tn_a", "a2": "tn_a"})
    comeback = [f"c{i}" for i in range(150)]
    assert due.push(comeback, dict.fromkeys(comeback, "tn_a"), first=True) == 2
    chunks = redis_client.lrange(f"{BULK_DUE_OF_PREFIX}tn_a", 0, -1)
    assert [c.decode() for c in chunks] == [
        ",".join(comeback[:100]),
        ",".join(comeback[100:]),
        "a1,a2",
    ]
    # A tenant with nothing due is put in turn by a push first too
    due.push(["b1"], {"b1": "tn_b"}, first=True)
    assert redis_client.lrange(BULK_DUE_TENANTS, 0, -1) == [b"tn_a", b"tn_b"]


def test_many_items_pushed_first_keep_their_order(redis_client: redis.Redis) -> None:
    due = InteractiveDue(redis_client)
    items = [f"i{n}" for n in range(PUSH_CHUNK * 2 + 5)]
    due.push_items({"tn_a": ["last"]})
    due.push_items({"tn_a": items}, first=True)
    assert [i.decode() for i in redis_client.lrange(due_list("tn_a"), 0, -1)] == [*items, "last"]
