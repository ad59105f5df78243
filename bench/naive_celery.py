"""The baseline a user would write in an afternoon: one Celery task per call, the prefork
pool at its default concurrency, sync httpx, the Redis broker, no database.

Not part of the product; the benchmark starts it as `celery -A bench.naive_celery worker`.
"""

from __future__ import annotations

import os

import httpx
import redis
from celery import Celery

BROKER = os.environ.get("NAIVE_REDIS_URL", "redis://127.0.0.1:6379/15")
DONE_KEY = "naive:done"

app = Celery("naive", broker=BROKER)
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)

_client: httpx.Client | None = None
_redis: redis.Redis | None = None


@app.task(name="naive.call")
def call(url: str) -> None:
    global _client, _redis
    if _client is None:  # one per worker process, made after the fork
        _client = httpx.Client(timeout=30)
        _redis = redis.Redis.from_url(BROKER)
    _client.get(url, headers={"Authorization": "Bearer naive"}).read()
    assert _redis is not None
    _redis.incr(DONE_KEY)
