"""Which chunk of the bulk lane a Celery thread runs (worker/bulk_turns.py): the next
tenant's in turn, skipping the tenants at their share of the process, waiting while only
they have chunks due, giving its message back when other messages wait for a thread; a
take sent again, or never answered, loses no chunk; a countdown's ids put in turn. Against a
real redis-server."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
import redis
from celery.worker import state as celery_state
from sqlalchemy import Engine

from api.dev.embedded_redis import EmbeddedRedis
from models.broker import BrokerPublisher, lane_client, sender_app
from models.calls.states import CallStatus
from models.db.tables import ConnectedAccount
from models.interactive_due import BulkDue, held_ids
from models.keys import BULK_DUE_OF_PREFIX, QUEUE_BULK
from tests.worker.factories import make_call
from worker import bulk_turns as bulk_turns_module
from worker.budget import CallBudget
from worker.bulk_turns import BulkTurns, Chunk, HandBack, put_in_turn

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
    assert redis_client.hget(HELD, "m1") == f"tn_b:{','.join(few)}".encode()


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


class Answers(redis.Redis):
    """A client whose next script to run on the server (EVALSHA) has its answer lost, once
    `lose` says so: `"again"` sends it once more, as a client's retry does, and answers
    that; `"error"` raises as a client with no retry left does."""

    lose: str = ""
    down = 0  # after the answer lost, how many more scripts find Redis away

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[0] == "EVALSHA" and not self.lose and self.down:
            self.down -= 1
            raise redis.ConnectionError("Redis is away")
        answer = super().execute_command(*args, **options)
        if args[0] != "EVALSHA":
            return answer
        lost, self.lose = self.lose, ""
        if lost == "again":
            return super().execute_command(*args, **options)
        if lost == "error":
            raise redis.ConnectionError("the answer was lost")
        return answer


def losing_one_answer(
    redis_client: redis.Redis, chunks: int, how: str, down: int = 0
) -> tuple[list[str], BulkTurns]:
    """Tenant a's `chunks` chunks due, and a thread's turns whose first take's answer is
    lost `how`, Redis then away for `down` more scripts (Answers)."""
    backlog = ids("a", 100 * chunks)
    BulkDue(redis_client).push(backlog, dict.fromkeys(backlog, "tn_a"))
    kwargs = redis_client.connection_pool.connection_kwargs
    client = Answers(host=kwargs["host"], port=kwargs["port"])
    client.lose, client.down = how, down
    budget = CallBudget(limit=10_000, threads=32)
    return backlog, BulkTurns(BulkDue(client), budget, HELD, settle_pauses_s=(0.0, 0.0))


def left_of(redis_client: redis.Redis, tenant: str) -> list[str]:
    """Every id of `tenant` still due, and every id held."""
    on_list = redis_client.lrange(f"{BULK_DUE_OF_PREFIX}{tenant}", 0, -1)
    return sorted(
        [i for chunk in on_list for i in chunk.decode().split(",")]
        + [i for value in redis_client.hvals(HELD) for i in held_ids(value)]
    )


def test_a_take_sent_again_under_the_same_message_takes_nothing_more(
    redis_client: redis.Redis,
) -> None:
    # Given three chunks due, and a client whose first take's answer is lost and the take
    # sent again (redis-py's retry)
    backlog, turns = losing_one_answer(redis_client, 3, "again")
    # Then the second send answers the chunk the first one took, and took no other
    assert turns.take("m1") == Chunk("tn_a", backlog[:100])
    assert left_of(redis_client, "tn_a") == sorted(backlog)
    assert BulkDue(redis_client).depth() == 2


def test_a_take_whose_answer_never_comes_puts_its_chunk_back_in_turn_and_its_message_back(
    redis_client: redis.Redis,
) -> None:
    # Given two chunks due, and a take whose script ran but whose answer never came
    backlog, turns = losing_one_answer(redis_client, 2, "error")
    # Then as soon as Redis answers, the chunk it took is first on its tenant's list again,
    # and its message goes back to its queue to take it
    with pytest.raises(HandBack, match="back in turn"):
        turns.take("m1")
    assert not turns.keeps("m1")
    assert redis_client.hlen(HELD) == 0
    assert left_of(redis_client, "tn_a") == sorted(backlog)
    assert turns.take("m2") == Chunk("tn_a", backlog[:100])


def test_a_take_whose_answer_never_comes_while_redis_stays_away_keeps_its_chunk(
    redis_client: redis.Redis,
) -> None:
    # Given a take whose answer never came, and Redis away for every try after it
    backlog, turns = losing_one_answer(redis_client, 2, "error", down=2)
    assert turns.take("m1") is None
    # Then the message's entry is kept when the message ends (worker/app.py: task_postrun)
    assert turns.keeps("m1")
    assert left_of(redis_client, "tn_a") == sorted(backlog)
    # And the next take, Redis back, puts its chunk back at the head of its tenant's list
    # first, and takes it
    assert turns.take("m2") == Chunk("tn_a", backlog[:100])
    assert not turns.keeps("m1")
    assert redis_client.hkeys(HELD) == [b"m2"]
    assert left_of(redis_client, "tn_a") == sorted(backlog)


def test_a_stopping_worker_takes_no_chunk(redis_client: redis.Redis) -> None:
    due = BulkDue(redis_client)
    due.push(["a1"], {"a1": "tn_a"})
    turns = BulkTurns(due, CallBudget(limit=100, threads=4), HELD, stopping=lambda: True)
    with pytest.raises(HandBack, match="stopping"):
        turns.take("m1")
    assert due.depth() == 1


def test_a_thread_that_waits_too_long_for_another_threads_take_hands_its_message_back(
    redis_client: redis.Redis,
) -> None:
    # Given a take of the process that does not end (a Redis that does not answer)
    due = BulkDue(redis_client)
    due.push(["a1"], {"a1": "tn_a"})
    turns = BulkTurns(due, CallBudget(limit=100, threads=4), HELD, take_wait_s=0.05)
    # Then another thread's message goes back to its queue, and the chunk stays due
    with turns._taking, pytest.raises(HandBack, match="answered"):
        turns.take("m1")
    assert due.depth() == 1


@pytest.mark.parametrize(("should_stop", "stopping"), [(None, False), (0, True), (1, True)])
def test_a_warm_shutdown_is_stopping_whatever_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, should_stop: int | None, stopping: bool
) -> None:
    # Celery's warm shutdown on SIGTERM sets should_stop to 0 (EX_OK)
    monkeypatch.setattr(celery_state, "should_stop", should_stop)
    assert bulk_turns_module._stopping() is stopping


@pytest.mark.parametrize(
    ("limit", "threads", "held"),
    [
        # 4 threads (a tenant's share: 3), two of tenant a's messages held
        (10_000, 4, [1, 1]),
        # 768 calls (a tenant's share: 576), 400 of tenant a's held (400 + 100 <= 576)
        (768, 32, [400]),
    ],
    ids=["threads", "calls"],
)
def test_a_chunk_taken_counts_at_once_so_the_next_take_sees_its_tenant_at_its_share(
    redis_client: redis.Redis, limit: int, threads: int, held: list[int]
) -> None:
    due = BulkDue(redis_client)
    backlog = ids("a", 300)
    due.push(backlog, dict.fromkeys(backlog, "tn_a"))
    budget = CallBudget(limit=limit, threads=threads)
    turns = BulkTurns(due, budget, HELD)
    with contextlib.ExitStack() as holding:
        for calls in held:
            holding.enter_context(budget.hold(calls, "tn_a"))
        # When a thread takes a chunk, before holding it
        assert turns.take("m1") == Chunk("tn_a", backlog[:100])
        # Then the next take waits: the tenant is at its share with it
        got: list[Chunk | None] = []
        waiter = threading.Thread(target=lambda: got.append(turns.take("m2")), daemon=True)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive()
    # And takes it once one of the tenant's messages ends
    waiter.join(JOIN_S)
    assert got == [Chunk("tn_a", backlog[100:200])]


class Flag:
    def __init__(self) -> None:
        self.up = False
        self.asked = threading.Event()

    def __call__(self) -> bool:
        self.asked.set()
        return self.up


@pytest.mark.parametrize("reason", ["other work", "stopping"])
def test_a_thread_waiting_for_a_turn_hands_its_message_back(
    redis_client: redis.Redis, reason: str
) -> None:
    # Given a process of 4 threads (a tenant's share: 3) running 3 of tenant a's chunks,
    # and its backlog due
    due = BulkDue(redis_client)
    backlog = ids("a", 500)
    due.push(backlog, dict.fromkeys(backlog, "tn_a"))
    budget = CallBudget(limit=10_000, threads=4)
    other_work, stopping = Flag(), Flag()
    turns = BulkTurns(due, budget, HELD, other_work=other_work, stopping=stopping)
    outcome: list[str] = []

    def fourth() -> None:
        try:
            outcome.append(repr(turns.take("m4")))
        except HandBack as exc:
            outcome.append(f"handed back: {exc}")

    with budget.hold(1, "tn_a"), budget.hold(1, "tn_a"), budget.hold(1, "tn_a"):
        thread = threading.Thread(target=fourth, daemon=True)
        thread.start()
        # While nothing else waits, its thread waits for a turn
        assert other_work.asked.wait(JOIN_S)
        thread.join(0.6)
        assert thread.is_alive()
        # When a message waits for a thread (or the worker stops), it is handed back,
        # holding no chunk
        (other_work if reason == "other work" else stopping).up = True
        thread.join(JOIN_S)
        assert len(outcome) == 1
        assert outcome[0].startswith("handed back")
        assert redis_client.hlen(HELD) == 0
        assert budget.full(100) == ["tn_a"]  # the three held, nothing more
    assert due.depth() == 5


def test_a_countdowns_ids_go_first_in_their_tenants_turn(
    engine: Engine,
    account: ConnectedAccount,
    redis_client: redis.Redis,
    redis_server: EmbeddedRedis,
) -> None:
    # Given a tenant's backlog due, and a bulk message with ids (a countdown's, or an older
    # API's) of two of its calls waiting, one ended, and one unknown
    backlog = ids("a", 150)
    BulkDue(redis_client).push(backlog, dict.fromkeys(backlog, account.tenant_id))
    waiting = [
        make_call(engine, account, status=s) for s in (CallStatus.QUEUED, CallStatus.RETRYING)
    ]
    ended = make_call(engine, account, status=CallStatus.COMPLETED)
    publisher = BrokerPublisher(sender_app(redis_server.url), lane_client(redis_server.url))
    # When it arrives
    put_in_turn(engine, publisher, [c.id for c in waiting] + [ended.id, "fc_unknown"])
    publisher.close()
    # Then the waiting ones are the head of their tenant's list (they had their turn), with a
    # message to take them, and nothing else is pushed
    turns = BulkTurns(BulkDue(redis_client), CallBudget(limit=10_000, threads=32), HELD)
    assert turns.take("m1") == Chunk(account.tenant_id, [c.id for c in waiting])
    assert turns.take("m2") == Chunk(account.tenant_id, backlog[:100])
    assert redis_client.llen(QUEUE_BULK) == 1
