"""Every Redis key, channel and queue name passthru uses, in one place."""

from __future__ import annotations

PREFIX = "passthru"

# Celery queues (lanes). Interactive calls never wait behind bulk batches.
QUEUE_INTERACTIVE = f"{PREFIX}.interactive"
QUEUE_BULK = f"{PREFIX}.bulk"
QUEUE_MAINTENANCE = f"{PREFIX}.maintenance"
# Webhook deliveries have their own lane: a slow receiver never delays calls.
QUEUE_WEBHOOKS = f"{PREFIX}.webhooks"
CALL_QUEUES = (QUEUE_INTERACTIVE, QUEUE_BULK)
# The bulk lane's Celery queues are BULK_SHARDS queues, QUEUE_BULK and `{QUEUE_BULK}.1`
# onwards. Its calls due now wait in chunks on their tenant's list (BULK_DUE_* below), a
# message without ids on QUEUE_BULK for each; calls with a countdown go in messages with their
# ids to their tenant's shard, one of the others (models/broker.py: bulk_queue), and join
# their tenant's list when due. A worker consuming QUEUE_BULK consumes all of them, in turn
# (models/queue_order.py).
BULK_SHARDS = 8
BULK_QUEUES = (QUEUE_BULK, *(f"{QUEUE_BULK}.{n}" for n in range(1, BULK_SHARDS)))
# The interactive lane's calls due now, as plain ids on Redis lists, one per tenant
# (`{DUE_OF_PREFIX}{tenant id}`), and the tenants with calls due in turn on DUE_TENANTS
# (models/interactive_due.py): every worker process takes them straight off (worker/lane.py),
# tenant after tenant, without Celery's envelope, events and acknowledgements on a path a
# caller waits on. Delayed ones (retries) go through QUEUE_INTERACTIVE with a countdown.
# LIST_INTERACTIVE names the lane in metrics; it was its one list before there was one per
# tenant, and ids an older API process still pushes there are taken last.
LIST_INTERACTIVE = f"{PREFIX}:interactive-due"
DUE_TENANTS = f"{PREFIX}:interactive-due-tenants"
DUE_OF_PREFIX = f"{PREFIX}:interactive-due:"
# The bulk lane's chunks of ids, the same way: a list per tenant (`{BULK_DUE_OF_PREFIX}{tenant
# id}`), the tenants in turn on BULK_DUE_TENANTS (models/interactive_due.py: BulkDue). Each
# chunk pushed is followed by a message of TASK_TAKE_BULK on QUEUE_BULK that carries no ids:
# the Celery thread that runs it takes the next tenant's oldest chunk (worker/bulk_turns.py).
BULK_DUE_TENANTS = f"{PREFIX}:bulk-due-tenants"
BULK_DUE_OF_PREFIX = f"{PREFIX}:bulk-due:"
BULK_DUE = f"{PREFIX}:bulk-due"  # the chunks' name in metrics
# Webhook deliveries due now, the same way: a list of ids per tenant (`{HOOKS_DUE_OF_PREFIX}
# {tenant id}`), the tenants in turn on HOOKS_DUE_TENANTS (models/webhooks/due.py). Each
# worker process's webhook sender takes the next one whenever it has room for that tenant
# (worker/webhooks/puller.py). Retries with a countdown go through QUEUE_WEBHOOKS.
HOOKS_DUE_TENANTS = f"{PREFIX}:webhooks-due-tenants"
HOOKS_DUE_OF_PREFIX = f"{PREFIX}:webhooks-due:"
HOOKS_DUE = f"{PREFIX}:webhooks-due"  # their name in metrics

# Task names, as shown in Flower.
TASK_EXECUTE_CALLS = "passthru.execute_calls"
TASK_TAKE_BULK = "passthru.take_bulk"
TASK_SWEEP = "passthru.sweep"
TASK_DELIVER_WEBHOOKS = "passthru.deliver_webhooks"
TASK_PURGE = "passthru.purge_old_calls"

# Call ids per bulk message: one Redis message (about 1 KiB of envelope) carries this many.
BULK_CHUNK = 100

# Pub/sub channel on which workers announce finished call ids, comma-separated
# (for `Prefer: wait`).
CHANNEL_CALL_DONE = f"{PREFIX}:call-done"
# ... and the results of finished interactive calls, one per message (`{id} {json}`), so a
# waiting API process answers without reading the call again (models/calls/notices.py).
CHANNEL_CALL_RESULT = f"{PREFIX}:call-result"

# Per-tenant bounds the API keeps in Redis (submissions per second, redeliveries per minute),
# each `{QUOTA_PREFIX}:{bound}:{tenant id}`.
QUOTA_PREFIX = f"{PREFIX}:quota"

# Set by the sweeper; its absence means Redis lost its data (restart without persistence),
# so every queued call must be published again.
KEY_BROKER_EPOCH = f"{PREFIX}:broker-epoch"

# What each worker process holds and has not finished, so the sweeper can publish it again
# as soon as the process is found dead (worker/held.py): `{HELD_PREFIX}:{worker id}` is a
# hash of Celery messages (task id -> comma-separated call ids), and
# `{HELD_PREFIX}-lane:{worker id}` a list of the interactive ids its lane threads popped.
HELD_PREFIX = f"{PREFIX}:held"
HELD_LANE_PREFIX = f"{PREFIX}:held-lane"

# Web console sessions (api/console/sessions.py): `{CONSOLE_SESSION_PREFIX}:{sha256 of the
# cookie's token}` holds the SHA-256 of the API key that opened it, with a TTL;
# `{CONSOLE_SESSIONS_OF_PREFIX}:{that key hash}` is a sorted set of its sessions' keys by
# opening time, which bounds how many one key holds.
CONSOLE_SESSION_PREFIX = f"{PREFIX}:console-session"
CONSOLE_SESSIONS_OF_PREFIX = f"{PREFIX}:console-sessions-of"
