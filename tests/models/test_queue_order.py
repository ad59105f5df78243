"""The order a worker asks Redis for messages in: interactive first, bulk shards in turn."""

from __future__ import annotations

from models.keys import BULK_QUEUES, QUEUE_BULK, QUEUE_INTERACTIVE, QUEUE_WEBHOOKS
from models.queue_order import InteractiveFirst

SHARD_1, SHARD_2 = BULK_QUEUES[1], BULK_QUEUES[2]


def test_interactive_first_then_the_bulk_shards_then_the_rest() -> None:
    # As a worker consuming `-Q interactive,bulk,webhooks` lists them (the shards added last)
    order = InteractiveFirst()
    order.update([QUEUE_INTERACTIVE, QUEUE_BULK, QUEUE_WEBHOOKS, SHARD_1, SHARD_2])
    assert order.consume(5) == [QUEUE_INTERACTIVE, QUEUE_BULK, SHARD_1, SHARD_2, QUEUE_WEBHOOKS]


def test_the_shard_a_message_came_from_is_asked_last_next_time() -> None:
    order = InteractiveFirst([QUEUE_INTERACTIVE, QUEUE_BULK, SHARD_1, SHARD_2, QUEUE_WEBHOOKS])
    order.consume(5)
    order.rotate(QUEUE_BULK)
    assert order.consume(5) == [QUEUE_INTERACTIVE, SHARD_1, SHARD_2, QUEUE_BULK, QUEUE_WEBHOOKS]
    order.rotate(SHARD_2)
    assert order.consume(5) == [QUEUE_INTERACTIVE, SHARD_1, QUEUE_BULK, SHARD_2, QUEUE_WEBHOOKS]
    # a message from a queue that is no shard changes nothing: interactive stays first
    order.rotate(QUEUE_INTERACTIVE)
    order.rotate(QUEUE_WEBHOOKS)
    assert order.consume(5) == [QUEUE_INTERACTIVE, SHARD_1, QUEUE_BULK, SHARD_2, QUEUE_WEBHOOKS]


def test_a_queue_no_longer_consumed_leaves_the_turn() -> None:
    order = InteractiveFirst([QUEUE_INTERACTIVE, QUEUE_BULK, SHARD_1])
    order.consume(3)
    order.update([QUEUE_INTERACTIVE, SHARD_1])
    assert order.consume(2) == [QUEUE_INTERACTIVE, SHARD_1]
