"""The rate-limit baseline a user would reach for first: Celery's own `rate_limit` on a task
doing the GET with sync httpx, on the Redis broker, no database.

Celery keeps that limit in a token bucket inside each worker instance, so it holds per
worker, not across them. The benchmark starts N instances of
`celery -A bench.naive_ratelimited worker --pool prefork -c 1`, each with one pool process
running one task at a time and its own bucket. All tasks share Celery's default queue.

Not part of the product.
"""

from __future__ import annotations

import json
import os
import time

import httpx
import redis
from celery import Celery

BROKER = os.environ.get("NAIVE_REDIS_URL", "redis://127.0.0.1:6379/15")
TASK_10PS = "naive_rl.call_10ps"
TASK_2PS = "naive_rl.call_2ps"
TASK_UNLIMITED = "naive_rl.call_unlimited"
UNLIMITED_RAN_KEY = "naive_rl:unlimited_ran"

app = Celery("naive-ratelimited", broker=BROKER)
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)

_client: httpx.Client | None = None
_redis: redis.Redis | None = None


def done_key(task: str) -> str:
    """The Redis counter of finished tasks of one kind."""
    return f"naive_rl:done:{task}"


def _get(url: str) -> redis.Redis:
    """GET `url`; return the Redis client (one of each per worker process, made after the
    fork)."""
    global _client, _redis
    if _client is None or _redis is None:
        _client = httpx.Client(timeout=30)
        _redis = redis.Redis.from_url(BROKER)
    _client.get(url, headers={"Authorization": "Bearer naive"}).read()
    return _redis


@app.task(name=TASK_10PS, rate_limit="10/s")
def call_10ps(url: str) -> None:
    _get(url).incr(done_key(TASK_10PS))


@app.task(name=TASK_2PS, rate_limit="2/s")
def call_2ps(url: str) -> None:
    _get(url).incr(done_key(TASK_2PS))


@app.task(name=TASK_UNLIMITED)
def call_unlimited(url: str) -> None:
    """Record when it ran (after its GET answered) and how much of the 2/s backlog had."""
    client = _get(url)
    ran = {"at": time.time(), "backlog_done": int(client.get(done_key(TASK_2PS)) or 0)}
    client.set(UNLIMITED_RAN_KEY, json.dumps(ran))
