"""Hand call ids to the broker. The database row is written first; a failed publish
leaves `published_at` empty and the sweeper publishes the call again."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kombu.exceptions import OperationalError

from models.keys import TASK_EXECUTE_CALL
from worker.app import app

log = logging.getLogger("passthru.publish")


def publish_calls(call_ids: Sequence[str], queue: str) -> bool:
    """Publish every id; False if the broker could not be reached (the sweeper retries)."""
    try:
        with app.producer_or_acquire() as producer:
            for call_id in call_ids:
                app.send_task(TASK_EXECUTE_CALL, args=[call_id], queue=queue, producer=producer)
    except (OperationalError, OSError) as exc:
        log.warning("broker unreachable, %d call(s) left for the sweeper: %s", len(call_ids), exc)
        return False
    return True
