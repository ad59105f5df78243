"""Every Redis key, channel and queue name passthru uses, in one place."""

from __future__ import annotations

PREFIX = "passthru"

# Celery queues (lanes). Interactive calls never wait behind bulk batches.
QUEUE_INTERACTIVE = f"{PREFIX}.interactive"
QUEUE_BULK = f"{PREFIX}.bulk"
QUEUE_MAINTENANCE = f"{PREFIX}.maintenance"
CALL_QUEUES = (QUEUE_INTERACTIVE, QUEUE_BULK)

# Task names, as shown in Flower.
TASK_EXECUTE_CALL = "passthru.execute_call"
TASK_SWEEP = "passthru.sweep"

# Pub/sub channel on which workers announce finished call ids (for `Prefer: wait`).
CHANNEL_CALL_DONE = f"{PREFIX}:call-done"

# Set by the sweeper; its absence means Redis lost its data (restart without persistence),
# so every queued call must be published again.
KEY_BROKER_EPOCH = f"{PREFIX}:broker-epoch"
