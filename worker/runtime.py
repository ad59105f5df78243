"""The process-wide runtime of a worker: one HTTP client, one engine, one Redis client."""

from __future__ import annotations

import contextlib
from functools import lru_cache

import httpx
import redis

from models.catalog import get_catalog
from models.db import get_engine, utcnow
from models.keys import CHANNEL_CALL_DONE
from models.secrets import vault_for
from models.settings import Settings, get_settings
from worker.pipeline import Runtime
from worker.send import SendPolicy


def make_http_client(settings: Settings) -> httpx.Client:
    """One pooled client per process, shared by its threads (httpx.Client is thread-safe)."""
    limits = httpx.Limits(
        max_connections=settings.worker_concurrency * 2,
        max_keepalive_connections=settings.worker_concurrency,
    )
    timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
    return httpx.Client(limits=limits, timeout=timeout, follow_redirects=False, trust_env=False)


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    settings = get_settings()
    redis_client = redis.Redis.from_url(settings.redis_url)

    def notify(call_id: str) -> None:
        # If Redis is away, waiters still see the result by polling the database.
        with contextlib.suppress(redis.RedisError):
            redis_client.publish(CHANNEL_CALL_DONE, call_id)

    return Runtime(
        engine=get_engine(),
        client=make_http_client(settings),
        catalog=get_catalog(),
        vault=vault_for(tuple(settings.encryption_key_list)),
        send_policy=SendPolicy(
            overrides=settings.upstream_overrides,
            allow_private_networks=settings.allow_private_networks,
            max_response_bytes=settings.max_response_bytes,
        ),
        lease_s=settings.lease_s,
        clock=utcnow,
        notify=notify,
    )
