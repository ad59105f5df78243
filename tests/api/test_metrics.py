"""`/metrics`: lanes and the rate limiter as Prometheus sees them."""

from __future__ import annotations

from datetime import timedelta

import redis
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine

from api.embedded_redis import EmbeddedRedis
from api.metrics import COUNTERS, PassthruCollector
from models.catalog import Catalog
from models.db import utcnow
from models.keys import QUEUE_BULK
from models.limits import pause_key, rules_for
from models.secrets import Vault
from models.tables import Tenant
from tests.api.conftest import Caller
from tests.worker.factories import make_account, make_call
from worker.limiter import Ask, RedisLimiter


def test_lanes_bookings_and_pauses_are_exported(
    redis_server: EmbeddedRedis, catalog: Catalog
) -> None:
    # Given 3 messages in the bulk lane, a Slack account with 5 slots booked, and a pause
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.rpush(QUEUE_BULK, "a", "b", "c")
    slack = catalog.get("slack")
    assert slack is not None
    rules = rules_for(slack, tenant_id="tn1", account_id="ca1", path="/api/chat.postMessage")
    limiter = RedisLimiter(client)
    limiter.book_many(
        [Ask(rules, pause_key(slack, "ca1"))] * 5, near_ms=600_000, horizon_ms=600_000
    )
    limiter.pause(pause_key(slack, "ca2"), 30_000)
    registry = CollectorRegistry()
    registry.register(PassthruCollector(client, catalog))

    # When scraped
    text = generate_latest(registry).decode()

    # Then the figures are there, labelled by lane, app and declared limit
    assert 'passthru_queue_messages{queue="passthru.bulk"} 3.0' in text
    assert 'passthru_rate_limit_paused_keys{app="slack"} 1.0' in text
    assert 'passthru_rate_limit_busy_keys{app="slack",limit="50/60s account (1200 ms)"} 1.0' in text
    booked = next(
        line for line in text.splitlines() if line.startswith("passthru_rate_limit_booked_ahead")
    )
    assert 5.0 < float(booked.split()[-1]) <= 6.0  # 5 slots of 1.2 s
    client.close()


def test_metrics_answer_even_when_redis_does_not(caller: Caller) -> None:
    # The test app's Redis URL points at a closed port
    response = caller.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


def test_calls_waiting_and_the_oldest_due_one_are_exported(
    redis_server: EmbeddedRedis, catalog: Catalog, engine: Engine, tenant: Tenant, vault: Vault
) -> None:
    # Given a queued call created 90 s ago (and others, from other tests, maybe)
    account = make_account(engine, tenant, vault)
    make_call(engine, account, created_at=utcnow() - timedelta(seconds=90))
    client = redis.Redis.from_url(redis_server.url)
    registry = CollectorRegistry()
    registry.register(PassthruCollector(client, catalog, engine))
    # When scraped
    text = generate_latest(registry).decode()
    # Then the backlog's age and size show
    age = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("passthru_oldest_queued_call_age_seconds ")
    )
    assert age >= 90
    assert 'passthru_calls_waiting{status="queued"}' in text
    client.close()


def test_submissions_are_counted(caller: Caller) -> None:
    labels = {"error": "no_connected_account"}
    before = COUNTERS.get_sample_value("passthru_calls_rejected_total", labels) or 0
    refused = caller.client.post(
        "/slack-passthrough-request",
        json={"method": "GET", "url": "conversations.list"},
        headers=caller.headers(),
    )
    assert refused.status_code == 400
    after = COUNTERS.get_sample_value("passthru_calls_rejected_total", labels) or 0
    assert after == before + 1
