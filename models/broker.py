"""Handing ids to the broker, by task name. The API and the worker's sweeper publish the same
messages without sharing any code but this: the API sends with a small Celery client
(`sender_app`) that knows no task, only the message settings the worker consumes with
(`message_settings`). The database row is always written first; a publish that fails
leaves `published_at` empty and the sweeper publishes again.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

import redis
from celery import Celery
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError
from kombu.pools import ProducerPool

from models.interactive_due import BulkDue, InteractiveDue
from models.keys import (
    BULK_CHUNK,
    BULK_QUEUES,
    BULK_SHARDS,
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    QUEUE_MAINTENANCE,
    QUEUE_WEBHOOKS,
    TASK_DELIVER_WEBHOOKS,
    TASK_EXECUTE_CALLS,
    TASK_PURGE,
    TASK_SWEEP,
    TASK_TAKE_BULK,
)
from models.webhooks.due import DeliveriesDue

log = logging.getLogger("passthru.publish")

# Must exceed the longest countdown a task is given; longer waits are kept in the database.
VISIBILITY_TIMEOUT_S = 15 * 60

# Messages due within this are published at once with a Celery countdown; later ones are left
# to the sweeper, so no long ETA ever sits in Redis.
MAX_COUNTDOWN_S = 60.0


def message_settings() -> dict[str, Any]:
    """What a sender and the worker must agree on: serializer, queues, routes, transport."""
    return {
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            # Interactive first, then the bulk shards in turn (models/queue_order.py).
            "queue_order_strategy": "models.queue_order:InteractiveFirst",
        },
        "task_queues": [
            Queue(name, Exchange(name, type="direct"), routing_key=name)
            for name in (QUEUE_INTERACTIVE, *BULK_QUEUES, QUEUE_WEBHOOKS, QUEUE_MAINTENANCE)
        ],
        "task_default_queue": QUEUE_INTERACTIVE,
        "task_routes": {
            TASK_SWEEP: {"queue": QUEUE_MAINTENANCE},
            TASK_PURGE: {"queue": QUEUE_MAINTENANCE},
            TASK_DELIVER_WEBHOOKS: {"queue": QUEUE_WEBHOOKS},
        },
        "task_send_sent_event": True,
    }


def bulk_queue(tenant_id: str | None) -> str:
    """The bulk shard a message of a tenant's calls with a countdown goes to: any but
    QUEUE_BULK, whose messages are the lane's takes (`top_up_bulk` counts them); the second
    for an unknown tenant. The worker puts its ids in their tenants' turn when it arrives."""
    if not tenant_id:
        return BULK_QUEUES[1]
    return BULK_QUEUES[1 + zlib.crc32(tenant_id.encode()) % (BULK_SHARDS - 1)]


def lane_client(redis_url: str) -> redis.Redis:
    """The client BrokerPublisher pushes interactive calls with: short timeouts, so an
    unreachable Redis leaves the call to the sweeper at once instead of holding a caller."""
    return redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)


def sender_app(redis_url: str) -> Celery:
    """A Celery client that only sends: no task, no worker settings."""
    app = Celery("passthru-sender", broker=redis_url, set_as_current=False)
    app.conf.update(message_settings())
    return app


# No call's tenant known: its ids go in turn as the unknown tenant's (models/interactive_due.py).
NO_TENANTS: Mapping[str, str] = MappingProxyType({})


class Publisher(Protocol):
    def publish_calls(
        self,
        call_ids: Sequence[str],
        queue: str,
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
        first: bool = False,
    ) -> bool: ...

    def publish_deliveries(
        self,
        delivery_ids: Sequence[str],
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
    ) -> bool: ...

    def top_up_bulk(self) -> int: ...


class BrokerPublisher:
    """Publishes through a Celery app (the worker's own, or `sender_app`), and what is due
    now (the interactive lane's calls, the bulk lane's chunks, webhook deliveries) straight
    onto their tenants' lists through `redis` (models/interactive_due.py,
    models/webhooks/due.py).

    Its broker connections are its own (not kombu's process-wide pools, which every app with
    the same URL would share), so that `close` can close them."""

    def __init__(self, app: Celery, redis_client: redis.Redis) -> None:
        self._app = app
        self._redis = redis_client
        self._due = InteractiveDue(redis_client)
        self._bulk = BulkDue(redis_client)
        self._hooks = DeliveriesDue(redis_client)
        self._lock = threading.Lock()
        self._producers: ProducerPool | None = None

    def publish_calls(
        self,
        call_ids: Sequence[str],
        queue: str,
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
        first: bool = False,
    ) -> bool:
        """Publish every id (interactive ones due now on their tenant's list, by
        `tenant_of`; bulk ones due now in chunks of BULK_CHUNK on their tenant's list, at its
        head when `first` (calls that had their turn already), a message without ids on
        QUEUE_BULK for each chunk; bulk ones with a countdown in chunks on their tenant's
        shard; one per message elsewhere); False if the broker could not be reached (the
        sweeper retries)."""
        if queue == QUEUE_INTERACTIVE and not countdown_s:
            failure = self._pushed(lambda: self._due.push(call_ids, tenant_of))
        elif queue == QUEUE_BULK and not countdown_s:
            failure = self._push_bulk(call_ids, tenant_of, first)
        elif queue == QUEUE_BULK:
            shards: dict[str, list[str]] = {}
            for call_id in call_ids:
                shards.setdefault(bulk_queue(tenant_of.get(call_id)), []).append(call_id)
            messages = [
                (shard, ids[i : i + BULK_CHUNK])
                for shard, ids in shards.items()
                for i in range(0, len(ids), BULK_CHUNK)
            ]
            failure = self._send(TASK_EXECUTE_CALLS, messages, countdown_s)
        else:
            messages = [(queue, [call_id]) for call_id in call_ids]
            failure = self._send(TASK_EXECUTE_CALLS, messages, countdown_s)
        if failure is not None:
            log.warning(
                "broker unreachable, %d call(s) left for the sweeper: %s", len(call_ids), failure
            )
        return failure is None

    def publish_deliveries(
        self,
        delivery_ids: Sequence[str],
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
    ) -> bool:
        """Put the deliveries due now on their tenants' lists, by `tenant_of`, for the
        webhook senders to take when they have room (models/webhooks/due.py); those with a
        countdown in a message each on QUEUE_WEBHOOKS. False if the broker could not be
        reached (the sweeper publishes them later)."""
        if not delivery_ids:
            return True
        if countdown_s:
            messages = [(QUEUE_WEBHOOKS, [delivery_id]) for delivery_id in delivery_ids]
            failure = self._send(TASK_DELIVER_WEBHOOKS, messages, countdown_s)
        else:
            failure = self._pushed(lambda: self._hooks.push(delivery_ids, tenant_of))
        if failure is not None:
            log.warning(
                "broker unreachable, %d webhook(s) left for the sweeper: %s",
                len(delivery_ids),
                failure,
            )
        return failure is None

    def close(self) -> None:
        """Close the broker connections (they open again if the publisher is used again)."""
        with self._lock:
            producers, self._producers = self._producers, None
        if producers is not None:  # closing the connections closes their producers' channels
            producers.connections.force_close_all()
        self._redis.close()

    def _producer_pool(self) -> ProducerPool:
        with self._lock:
            if self._producers is None:
                limit = self._app.conf.broker_pool_limit
                connections = self._app.connection_for_write().Pool(limit=limit)
                self._producers = ProducerPool(connections, limit=limit)
            return self._producers

    def top_up_bulk(self) -> int:
        """Send a message of TASK_TAKE_BULK for each chunk due on the bulk lane when
        QUEUE_BULK holds none: chunks outlive their messages when a worker dies with messages
        it had taken but not started, or when the broker refused a message after its chunk
        was pushed. How many were sent (messages beyond the chunks take nothing)."""
        try:
            if self._redis.llen(QUEUE_BULK):
                return 0
            chunks = self._bulk.depth()
        except redis.RedisError:
            return 0
        if not chunks or self._send(TASK_TAKE_BULK, [(QUEUE_BULK, None)] * chunks, 0.0):
            return 0
        return chunks

    def _push_bulk(
        self, call_ids: Sequence[str], tenant_of: Mapping[str, str], first: bool
    ) -> Exception | None:
        if not call_ids:
            return None
        try:
            chunks = self._bulk.push(call_ids, tenant_of, first)
        except redis.RedisError as exc:
            return exc
        return self._send(TASK_TAKE_BULK, [(QUEUE_BULK, None)] * chunks, 0.0)

    @staticmethod
    def _pushed(push: Callable[[], object]) -> Exception | None:
        """Push onto tenants' lists; the error if Redis could not be reached."""
        try:
            push()
        except redis.RedisError as exc:
            return exc
        return None

    def _send(
        self, task: str, messages: Sequence[tuple[str, list[str] | None]], countdown_s: float
    ) -> Exception | None:
        """Send each (queue, ids) as one message (None: a message without arguments); the
        error if the broker could not be reached."""
        try:
            with self._producer_pool().acquire(block=True) as producer:
                for queue, chunk in messages:
                    self._app.send_task(
                        task,
                        args=[] if chunk is None else [chunk],
                        queue=queue,
                        producer=producer,
                        countdown=countdown_s or None,
                    )
        except (OperationalError, OSError) as exc:
            return exc
        return None


class NoPublisher:
    """Publishes nothing and says so (False): what is due is left to the sweeper (tests of
    other things)."""

    def publish_calls(self, *_: object, **__: object) -> bool:
        return False

    def publish_deliveries(self, *_: object, **__: object) -> bool:
        return False

    def top_up_bulk(self) -> int:
        return 0


def sending_publisher(redis_url: str) -> BrokerPublisher:
    """A publisher of a process that only sends (the API, its batch intake): `sender_app`
    for Celery's queues and `lane_client` for the interactive list."""
    return BrokerPublisher(sender_app(redis_url), lane_client(redis_url))
