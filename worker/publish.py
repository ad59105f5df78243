"""Hand call ids to the broker. The database row is written first; a failed publish
leaves `published_at` empty and the sweeper publishes the call again."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kombu.exceptions import OperationalError

from models.keys import (
    BULK_CHUNK,
    QUEUE_BULK,
    QUEUE_WEBHOOKS,
    TASK_DELIVER_WEBHOOKS,
    TASK_EXECUTE_CALLS,
)
from worker.app import app

log = logging.getLogger("passthru.publish")


def publish_calls(call_ids: Sequence[str], queue: str, countdown_s: float = 0.0) -> bool:
    """Publish every id (in chunks of BULK_CHUNK on the bulk lane, one per message
    elsewhere); False if the broker could not be reached (the sweeper retries)."""
    size = BULK_CHUNK if queue == QUEUE_BULK else 1
    try:
        with app.producer_or_acquire() as producer:
            for start in range(0, len(call_ids), size):
                chunk = list(call_ids[start : start + size])
                app.send_task(
                    TASK_EXECUTE_CALLS,
                    args=[chunk],
                    queue=queue,
                    producer=producer,
                    countdown=countdown_s or None,
                )
    except (OperationalError, OSError) as exc:
        log.warning("broker unreachable, %d call(s) left for the sweeper: %s", len(call_ids), exc)
        return False
    return True


def publish_deliveries(delivery_ids: Sequence[str], countdown_s: float = 0.0) -> bool:
    """One message per webhook delivery on its own lane (a slow receiver delays only its
    own); False if the broker could not be reached (the sweeper publishes them later)."""
    try:
        with app.producer_or_acquire() as producer:
            for delivery_id in delivery_ids:
                app.send_task(
                    TASK_DELIVER_WEBHOOKS,
                    args=[[delivery_id]],
                    queue=QUEUE_WEBHOOKS,
                    producer=producer,
                    countdown=countdown_s or None,
                )
    except (OperationalError, OSError) as exc:
        log.warning(
            "broker unreachable, %d webhook(s) left for the sweeper: %s", len(delivery_ids), exc
        )
        return False
    return True
