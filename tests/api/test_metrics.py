"""Metrics: what they say (lanes, the rate limiter, calls waiting), and who may read them."""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, insert

from api.dev.embedded_redis import EmbeddedRedis, free_port
from api.prometheus import COUNTERS, PassthruCollector
from models.catalog.apps import Catalog
from models.crypto.secrets import Vault
from models.db.engine import utcnow
from models.db.tables import Tenant, WorkerProcess
from models.interactive_due import BulkDue, InteractiveDue
from models.keys import QUEUE_BULK
from models.ratelimit.rules import pause_key, rules_for
from models.ratelimit.store import Ask, RedisLimiter
from models.webhooks.due import DeliveriesDue
from tests.api.conftest import Caller
from tests.api.test_errors import assert_error_shape
from tests.worker.factories import make_account, make_call


def test_lanes_bookings_and_pauses_are_exported(
    redis_server: EmbeddedRedis, catalog: Catalog
) -> None:
    # Given 3 messages and 2 chunks in the bulk lane, 3 webhook deliveries waiting, a Slack
    # account with 5 slots booked, and a pause
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.rpush(QUEUE_BULK, "a", "b", "c")
    InteractiveDue(client).push(["fc_1", "fc_2"], {"fc_1": "tn_a", "fc_2": "tn_b"})
    bulk = [f"fc_b{i}" for i in range(150)]
    BulkDue(client).push(bulk, dict.fromkeys(bulk, "tn_a"))  # two chunks
    DeliveriesDue(client).push(["msg_1", "msg_2", "msg_3"], {"msg_1": "tn_a", "msg_2": "tn_b"})
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
    assert 'passthru_queue_messages{queue="passthru:interactive-due"} 2.0' in text
    assert 'passthru_queue_messages{queue="passthru:bulk-due"} 2.0' in text
    # (the one without its tenant waits in a chunk of its own)
    assert 'passthru_queue_messages{queue="passthru:webhooks-due"} 3.0' in text
    assert 'passthru_rate_limit_paused_keys{app="slack"} 1.0' in text
    assert 'passthru_rate_limit_busy_keys{app="slack",limit="50/60s account (1200 ms)"} 1.0' in text
    booked = next(
        line for line in text.splitlines() if line.startswith("passthru_rate_limit_booked_ahead")
    )
    assert 5.0 < float(booked.split()[-1]) <= 6.0  # 5 slots of 1.2 s
    client.close()


def test_the_api_port_has_no_metrics_without_a_token(caller: Caller) -> None:
    # Given no PASSTHRU_METRICS_TOKEN (the test app's default)
    # When /metrics is asked on the API port, even with a bearer token
    response = caller.client.get("/metrics", headers={"Authorization": "Bearer anything"})
    # Then there is no such endpoint
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


def test_the_api_port_serves_metrics_to_the_token_only(
    make_app: Callable[..., FastAPI],
) -> None:
    # Given an API with PASSTHRU_METRICS_TOKEN set (and a Redis that does not answer)
    client = TestClient(make_app(metrics_token="scrape-s3cret"))
    # When asked without the token, or with another
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-s3cret"}):
        refused = client.get("/metrics", headers=headers)
        # Then it is a 401 in the error shape
        assert refused.status_code == 401, headers
        assert_error_shape(refused.json(), "unauthorized")
    # And with it, the metrics (those from the database; Redis' are left out)
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-s3cret"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "passthru_calls_waiting" in response.text
    assert "passthru_calls_rejected" in response.text


def test_the_api_serves_its_metrics_on_the_metrics_port(
    make_app: Callable[..., FastAPI],
) -> None:
    # Given an API process with PASSTHRU_METRICS_PORT set
    port = free_port()
    application = make_app(metrics_port=port)
    # When it runs (its lifespan starts the metrics server)
    with TestClient(application):
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        # Then the metrics port answers without any token
        assert scraped.status_code == 200
        assert "passthru_calls_waiting" in scraped.text
        assert "passthru_requests_refused" in scraped.text
    # And it stops with the process
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_a_metrics_port_already_taken_is_a_warning_not_a_failure(
    make_app: Callable[..., FastAPI], caplog: pytest.LogCaptureFixture
) -> None:
    # Given the metrics port held by another process
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # When the API starts
        with TestClient(make_app(metrics_port=port)) as client:
            # Then it serves on, and says why it has no metrics port
            assert client.get("/healthz").status_code == 200
    assert f"api metrics: port {port} is taken" in caplog.text


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


def test_worker_processes_alive_and_expired_are_exported(
    redis_server: EmbeddedRedis, catalog: Catalog, own_engine: Engine
) -> None:
    # Given two worker processes renewed just now and one whose lease ran out
    now = utcnow()
    with own_engine.begin() as conn:
        for name, expires_in in (("a", 10), ("b", 15), ("c", -5)):
            conn.execute(
                insert(WorkerProcess.__table__),  # type: ignore[attr-defined]
                {
                    "id": f"host:{name}",
                    "host": "host",
                    "pid": 1,
                    "started_at": now,
                    "expires_at": now + timedelta(seconds=expires_in),
                },
            )
    client = redis.Redis.from_url(redis_server.url)
    registry = CollectorRegistry()
    registry.register(PassthruCollector(client, catalog, own_engine))
    # When scraped, each state is counted
    assert registry.get_sample_value("passthru_worker_processes", {"state": "alive"}) == 2
    assert registry.get_sample_value("passthru_worker_processes", {"state": "expired"}) == 1
    client.close()
