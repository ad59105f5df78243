"""Which chunk of the bulk lane a Celery thread runs (worker/bulk_turns.py): the next
tenant's in turn, skipping the tenants at their share of the process, waiting while only
they have chunks due; against a real redis-server."""

from __future__ import annotations

import threading

import redis

from models.interactive_due import BulkDue
from worker.budget import CallBudget
from worker.bulk_turns import BulkTurns, Chunk

HELD = "passthru:held:test-worker"
JOIN_S = 10.0


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_chunks_are_taken_tenant_after_tenant_and_held_under_their_message(
    redis_client: redis.Redis,
) -> None:
    due = BulkDue(redis_client)
    backlog, few = ids("a", 300), ids("b", 20)
    due.push(backlog, dict.fromkeys(backlog, "tn_a"))  # three chunks first
    due.push(few, dict.fromkeys(few, "tn_b"))
    turns = BulkTurns(due, CallBudget(limit=10_000, threads=32), HELD)
    taken = [turns.take(f"m{i}") for i in range(5)]
    assert (
        taken
        == [
            Chunk("tn_a", backlog[:100]),
            Chunk("tn_b", few),  # the second tenant's batch, before the rest of the backlog
            Chunk("tn_a", backlog[100:200]),
            Chunk("tn_a", backlog[200:]),
            None,
        ]
    )
    assert redis_client.hget(HELD, "m1") == ",".join(few).encode()


def test_a_tenant_at_its_share_is_skipped_and_its_chunks_wait_for_one_of_its_messages(
    redis_client: redis.Redis,
) -> None:
    # Given a process of 4 threads (a tenant's share: 3) running 3 of tenant a's messages
    due = BulkDue(redis_client)
    backlog, few = ids("a", 200), ids("b", 5)
    due.push(backlog, dict.fromkeys(backlog, "tn_a"))
    budget = CallBudget(limit=10_000, threads=4)
    turns = BulkTurns(due, budget, HELD)
    leave = threading.Event()
    running = threading.Barrier(4, timeout=JOIN_S)

    def run(calls: int) -> None:
        with budget.hold(calls, "tn_a"):
            running.wait()
            leave.wait(JOIN_S)

    holders = [threading.Thread(target=run, args=(100,), daemon=True) for _ in range(3)]
    for holder in holders:
        holder.start()
    running.wait()
    # When another tenant's chunk is due behind tenant a's, it is taken first
    due.push(few, dict.fromkeys(few, "tn_b"))
    assert turns.take("m1") == Chunk("tn_b", few)
    # And tenant a's next chunk waits for one of its messages to end
    got: list[Chunk | None] = []
    waiter = threading.Thread(target=lambda: got.append(turns.take("m2")), daemon=True)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()
    leave.set()
    waiter.join(JOIN_S)
    assert got == [Chunk("tn_a", backlog[:100])]
    for holder in holders:
        holder.join(JOIN_S)


def test_nothing_due_is_none(redis_client: redis.Redis) -> None:
    turns = BulkTurns(BulkDue(redis_client), CallBudget(limit=100, threads=4), HELD)
    assert turns.take("m1") is None


def test_a_chunk_taken_counts_at_once_so_the_next_take_sees_its_tenant_at_its_share(
    redis_client: redis.Redis,
) -> None:
    # Given 4 threads (a tenant's share: 3) and two of tenant a's messages held
    due = BulkDue(redis_client)
    backlog = ids("a", 300)
    due.push(backlog, dict.fromkeys(backlog, "tn_a"))
    budget = CallBudget(limit=10_000, threads=4)
    turns = BulkTurns(due, budget, HELD)
    with budget.hold(1, "tn_a"), budget.hold(1, "tn_a"):
        # When a thread takes its third chunk, before holding it
        assert turns.take("m1") == Chunk("tn_a", backlog[:100])
        # Then the next take waits: the tenant is at its share already
        got: list[Chunk | None] = []
        waiter = threading.Thread(target=lambda: got.append(turns.take("m2")), daemon=True)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive()
    # And takes it once one of the tenant's messages ends
    waiter.join(JOIN_S)
    assert got == [Chunk("tn_a", backlog[100:200])]
