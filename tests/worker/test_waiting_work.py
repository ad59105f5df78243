"""Whether other messages wait in Redis on the worker's queues (worker/waiting_work.py):
what a bulk message waiting for its turn asks before it is handed back."""

from __future__ import annotations

import fakeredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker.waiting_work import WaitingWork

QUEUES = ("passthru.interactive", "passthru.bulk", "passthru.bulk.3", "passthru.webhooks")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watching(queues: tuple[str, ...] = QUEUES) -> tuple[fakeredis.FakeRedis, Clock, WaitingWork]:
    """A Redis, a clock, and the work waiting on `queues` read every 0.25 s."""
    client, clock = fakeredis.FakeRedis(), Clock()
    return client, clock, WaitingWork(client, lambda: queues, every_s=0.25, clock=clock)


def test_a_message_on_another_queue_is_other_work_and_one_on_its_own_is_not() -> None:
    client, clock, work = watching()
    assert not work.claim("passthru.bulk.3")
    client.lpush("passthru.bulk.3", "a message")
    clock.now += 1
    assert not work.claim("passthru.bulk.3")
    assert work.claim("passthru.bulk")
    client.lpush("passthru.interactive", "a message")
    clock.now += 1
    assert work.claim("passthru.bulk.3")


def test_each_message_waiting_is_claimed_once_until_the_lengths_are_read_again() -> None:
    # Given two messages waiting for a thread
    client, clock, work = watching()
    client.lpush("passthru.interactive", "a message", "another")
    # Then two of the waiting threads asking make room for them, not a third
    assert [work.claim("passthru.bulk") for _ in range(3)] == [True, True, False]
    # And once the lengths are read again, the messages still there are claimed anew
    clock.now += 0.3
    assert work.claim("passthru.bulk")


def test_queues_not_consumed_are_not_other_work() -> None:
    client, _, work = watching()
    client.lpush("passthru.bulk.5", "a message")
    assert not work.claim("passthru.bulk")


def test_webhooks_and_upkeep_are_other_work() -> None:
    # A free thread asks upkeep first and the webhooks' queue in turn with the bulk lane's
    client, _, work = watching((*QUEUES, "passthru.maintenance"))
    client.lpush("passthru.webhooks", "a message")
    client.lpush("passthru.maintenance", "a message")
    assert [work.claim("passthru.bulk") for _ in range(3)] == [True, True, False]


def test_the_lengths_are_read_at_most_once_per_period_for_every_thread() -> None:
    client, clock, work = watching()
    assert not work.claim("passthru.bulk")
    client.lpush("passthru.bulk.3", "a message")
    clock.now += 0.2
    assert not work.claim("passthru.bulk")  # read 0.2 s ago
    clock.now += 0.1
    assert work.claim("passthru.bulk")


def test_an_unreachable_redis_is_no_other_work() -> None:
    # The waiting message stays where it is rather than go round the queue for nothing
    client = redis.Redis(port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    work = WaitingWork(client, lambda: QUEUES, every_s=0.25, clock=Clock())
    assert not work.claim("passthru.bulk")


def test_messages_waiting_in_the_thread_pool_are_other_work() -> None:
    # A countdown's message comes due while every thread is busy: it waits in the pool
    client, clock = fakeredis.FakeRedis(), Clock()
    in_pool = [1]
    work = WaitingWork(
        client, lambda: QUEUES, every_s=0.25, clock=clock, in_pool=lambda: in_pool[0]
    )
    assert [work.claim("passthru.bulk") for _ in range(2)] == [True, False]
    in_pool[0] = 0
    clock.now += 0.3
    assert not work.claim("passthru.bulk")
