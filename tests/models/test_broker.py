"""Publishing: the interactive lane's calls due now go on their tenants' Redis lists,
everything else through Celery; and the notices waiters get. Against a real redis-server."""

from __future__ import annotations

import json
import time

import pytest
import redis
from celery import Celery

from api.dev.embedded_redis import EmbeddedRedis
from models.broker import BrokerPublisher, bulk_queue, lane_client, sender_app
from models.calls.notices import (
    RESULT_NOTICE_MAX_BYTES,
    parse_result_notice,
    publish_notices,
    result_notice,
)
from models.calls.resources import CallResult
from models.interactive_due import UNKNOWN_TENANT, due_list
from models.keys import (
    BULK_DUE_OF_PREFIX,
    BULK_DUE_TENANTS,
    BULK_QUEUES,
    CHANNEL_CALL_DONE,
    CHANNEL_CALL_RESULT,
    DUE_TENANTS,
    HOOKS_DUE_OF_PREFIX,
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    QUEUE_WEBHOOKS,
    TASK_TAKE_BULK,
)


@pytest.fixture
def celery(redis_server: EmbeddedRedis) -> Celery:
    return sender_app(redis_server.url)


def test_interactive_calls_due_now_go_on_their_tenants_lists_in_order(
    redis_client: redis.Redis, celery: Celery, redis_server: EmbeddedRedis
) -> None:
    publisher = BrokerPublisher(celery, lane_client(redis_server.url))
    assert publisher.publish_calls(["fc_1"], QUEUE_INTERACTIVE, tenant_of={"fc_1": "tn_a"})
    tenants = {"fc_2": "tn_b", "fc_3": "tn_a"}
    assert publisher.publish_calls(["fc_2", "fc_3"], QUEUE_INTERACTIVE, tenant_of=tenants)
    assert publisher.publish_calls(["fc_4"], QUEUE_INTERACTIVE)  # its tenant unknown
    assert redis_client.lrange(due_list("tn_a"), 0, -1) == [b"fc_1", b"fc_3"]
    assert redis_client.lrange(due_list("tn_b"), 0, -1) == [b"fc_2"]
    assert redis_client.lrange(due_list(UNKNOWN_TENANT), 0, -1) == [b"fc_4"]
    assert redis_client.lrange(DUE_TENANTS, 0, -1) == [b"tn_a", b"tn_b", b"-"]
    # and nothing went through Celery's interactive queue
    assert redis_client.llen(QUEUE_INTERACTIVE) == 0


def test_retries_and_bulk_go_through_celery(
    redis_client: redis.Redis, celery: Celery, redis_server: EmbeddedRedis
) -> None:
    publisher = BrokerPublisher(celery, lane_client(redis_server.url))
    assert publisher.publish_calls(["fc_1"], QUEUE_INTERACTIVE, countdown_s=5)
    assert publisher.publish_calls([f"fc_{i}" for i in range(150)], QUEUE_BULK)
    assert redis_client.llen(DUE_TENANTS) == 0
    assert redis_client.llen(QUEUE_INTERACTIVE) == 1  # one message, with its countdown
    assert redis_client.llen(QUEUE_BULK) == 2  # a message per chunk of 100 ids


def test_bulk_calls_due_now_go_on_their_tenants_lists_in_chunks_with_a_message_each(
    redis_client: redis.Redis, celery: Celery, redis_server: EmbeddedRedis
) -> None:
    publisher = BrokerPublisher(celery, lane_client(redis_server.url))
    ids = [f"fc_{i}" for i in range(150)]
    tenant_of = {**dict.fromkeys(ids[:140], "tn_a"), **dict.fromkeys(ids[140:], "tn_b")}
    assert publisher.publish_calls(ids, QUEUE_BULK, tenant_of=tenant_of)
    chunks = redis_client.lrange(f"{BULK_DUE_OF_PREFIX}tn_a", 0, -1)
    assert [c.decode().split(",") for c in chunks] == [ids[:100], ids[100:140]]
    assert redis_client.lrange(f"{BULK_DUE_OF_PREFIX}tn_b", 0, -1) == [",".join(ids[140:]).encode()]
    assert redis_client.lrange(BULK_DUE_TENANTS, 0, -1) == [b"tn_a", b"tn_b"]
    # and one message for each chunk on the bulk queue, carrying no ids
    messages = [json.loads(m) for m in redis_client.lrange(QUEUE_BULK, 0, -1)]
    assert [m["headers"]["task"] for m in messages] == [TASK_TAKE_BULK] * 3
    assert all(ids[0] not in json.dumps(m) for m in messages)
    assert all(redis_client.llen(shard) == 0 for shard in BULK_QUEUES[1:])


def test_bulk_calls_with_a_countdown_go_to_their_tenants_shard_with_their_ids(
    redis_client: redis.Redis, celery: Celery, redis_server: EmbeddedRedis
) -> None:
    tenants = [f"tn_{i}" for i in range(40)]
    # Every shard but the lane's takes' queue, which the top-up counts, is used
    assert {bulk_queue(t) for t in tenants} == set(BULK_QUEUES[1:])
    first, other = tenants[0], next(t for t in tenants if bulk_queue(t) != bulk_queue(tenants[0]))
    publisher = BrokerPublisher(celery, lane_client(redis_server.url))
    ids = [f"fc_{i}" for i in range(150)]
    tenant_of = {**dict.fromkeys(ids[:140], first), **dict.fromkeys(ids[140:], other)}
    assert publisher.publish_calls(ids, QUEUE_BULK, countdown_s=5, tenant_of=tenant_of)
    assert redis_client.llen(bulk_queue(first)) == 2  # 140 ids: 100 ids per message
    assert redis_client.llen(bulk_queue(other)) == 1
    assert bulk_queue(None) == BULK_QUEUES[1]  # an unknown tenant's
    assert redis_client.llen(QUEUE_BULK) == 0


def test_a_countdown_message_does_not_hide_a_chunk_left_without_a_message_from_the_top_up(
    redis_client: redis.Redis, celery: Celery, redis_server: EmbeddedRedis
) -> None:
    # Given a chunk whose message is gone, and a countdown's message of any tenant
    publisher = BrokerPublisher(celery, lane_client(redis_server.url))
    assert publisher.publish_calls(["a1"], QUEUE_BULK, tenant_of={"a1": "tn_a"})
    redis_client.delete(QUEUE_BULK)
    for tenant in [f"tn_{i}" for i in range(20)] + [""]:
        assert publisher.publish_calls(["b1"], QUEUE_BULK, countdown_s=5, tenant_of={"b1": tenant})
    # Then the top-up still sends the chunk its message
    assert publisher.top_up_bulk() == 1


def test_the_sweeper_tops_up_messages_for_chunks_left_without_one(
    redis_client: redis.Redis, celery: Celery, redis_server: EmbeddedRedis
) -> None:
    # Given two chunks due whose messages are gone (a dead worker had taken them)
    publisher = BrokerPublisher(celery, lane_client(redis_server.url))
    ids = [f"fc_{i}" for i in range(150)]
    assert publisher.publish_calls(ids, QUEUE_BULK, tenant_of=dict.fromkeys(ids, "tn_a"))
    redis_client.delete(QUEUE_BULK)
    # Then a message is sent for each
    assert publisher.top_up_bulk() == 2
    assert redis_client.llen(QUEUE_BULK) == 2
    # And none while messages wait on the queue
    assert publisher.top_up_bulk() == 0
    assert redis_client.llen(QUEUE_BULK) == 2


def test_an_unreachable_redis_says_so(celery: Celery) -> None:
    publisher = BrokerPublisher(celery, lane_client("redis://127.0.0.1:1/0"))
    assert publisher.publish_calls(["fc_1"], QUEUE_INTERACTIVE) is False


def result(call_id: str, output: object) -> CallResult:
    return CallResult(
        id=call_id, status="completed", network_code="200", output=output, headers={}, error=None
    )


def test_a_notice_carries_the_result_as_the_api_answers_it() -> None:
    r = result("fc_1", {"ok": True, "name": "Ada"})
    notice = result_notice(r)
    assert notice is not None
    assert parse_result_notice(notice) == ("fc_1", r.model_dump_json().encode())


def test_a_result_too_large_is_not_a_notice() -> None:
    assert result_notice(result("fc_1", "x" * RESULT_NOTICE_MAX_BYTES)) is None


def test_results_are_announced_with_their_notice_and_the_rest_by_id(
    redis_client: redis.Redis,
) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(CHANNEL_CALL_DONE, CHANNEL_CALL_RESULT)
    pubsub.get_message(timeout=1)
    pubsub.get_message(timeout=1)  # the two subscribe confirmations
    small, large = result("fc_1", {"ok": True}), result("fc_2", "x" * RESULT_NOTICE_MAX_BYTES)
    publish_notices(redis_client, ["fc_1", "fc_2", "fc_3"], [small, large])
    seen: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)
        if message and message["type"] == "message":
            seen.append((message["channel"], message["data"]))
    pubsub.close()
    assert seen == [
        (CHANNEL_CALL_RESULT.encode(), result_notice(small)),
        (CHANNEL_CALL_DONE.encode(), b"fc_2,fc_3"),
    ]


def test_webhook_deliveries_due_now_go_on_their_tenants_lists_and_retries_through_celery(
    redis_client: redis.Redis, celery: Celery, redis_server: EmbeddedRedis
) -> None:
    publisher = BrokerPublisher(celery, lane_client(redis_server.url))
    assert publisher.publish_deliveries(["msg_1", "msg_2"], tenant_of={"msg_1": "tn_a"})
    assert publisher.publish_deliveries(["msg_3"], 5.0, {"msg_3": "tn_a"})
    # Due now: on their tenant's list (the one without a tenant in the unknown bucket) ...
    assert redis_client.lrange(f"{HOOKS_DUE_OF_PREFIX}tn_a", 0, -1) == [b"msg_1"]
    assert redis_client.lrange(f"{HOOKS_DUE_OF_PREFIX}{UNKNOWN_TENANT}", 0, -1) == [b"msg_2"]
    # ... and the retry with its countdown, a message on the webhooks' queue
    assert redis_client.llen(QUEUE_WEBHOOKS) == 1
    assert publisher.publish_deliveries([]) is True
