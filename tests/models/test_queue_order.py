"""The order a worker asks Redis for messages in: upkeep, then interactive, then the bulk
queues and the webhooks' in turn."""

from __future__ import annotations

from models.keys import (
    BULK_QUEUES,
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    QUEUE_MAINTENANCE,
    QUEUE_WEBHOOKS,
)
from models.queue_order import InteractiveFirst

SHARD_1, SHARD_2 = BULK_QUEUES[1], BULK_QUEUES[2]
CONSUMED = [QUEUE_INTERACTIVE, QUEUE_BULK, QUEUE_WEBHOOKS, QUEUE_MAINTENANCE, SHARD_1, SHARD_2]


def test_upkeep_then_interactive_then_the_bulk_queues_and_the_webhooks_in_turn() -> None:
    # As the Procfile's worker lists them (the shards added last)
    order = InteractiveFirst()
    order.update(CONSUMED)
    assert order.consume(6) == [
        QUEUE_MAINTENANCE,
        QUEUE_INTERACTIVE,
        QUEUE_BULK,
        QUEUE_WEBHOOKS,
        SHARD_1,
        SHARD_2,
    ]


def test_the_queue_a_message_came_from_is_asked_last_of_those_in_turn_next_time() -> None:
    order = InteractiveFirst(CONSUMED)
    order.consume(6)
    order.rotate(QUEUE_BULK)
    first = [QUEUE_MAINTENANCE, QUEUE_INTERACTIVE]
    assert order.consume(6) == [*first, QUEUE_WEBHOOKS, SHARD_1, SHARD_2, QUEUE_BULK]
    # so a deep bulk queue and the webhooks' take turns
    order.rotate(QUEUE_WEBHOOKS)
    assert order.consume(6) == [*first, SHARD_1, SHARD_2, QUEUE_BULK, QUEUE_WEBHOOKS]
    order.rotate(SHARD_2)
    assert order.consume(6) == [*first, SHARD_1, QUEUE_BULK, QUEUE_WEBHOOKS, SHARD_2]
    # a message from a queue not in turn changes nothing: upkeep and interactive stay first
    order.rotate(QUEUE_INTERACTIVE)
    order.rotate(QUEUE_MAINTENANCE)
    assert order.consume(6) == [*first, SHARD_1, QUEUE_BULK, QUEUE_WEBHOOKS, SHARD_2]


def test_a_queue_no_longer_consumed_leaves_the_turn() -> None:
    order = InteractiveFirst([QUEUE_INTERACTIVE, QUEUE_BULK, SHARD_1])
    order.consume(3)
    order.update([QUEUE_INTERACTIVE, SHARD_1])
    assert order.consume(2) == [QUEUE_INTERACTIVE, SHARD_1]


def test_a_worker_of_one_queue_asks_only_that_one() -> None:
    order = InteractiveFirst([QUEUE_WEBHOOKS])
    assert order.consume(1) == [QUEUE_WEBHOOKS]
