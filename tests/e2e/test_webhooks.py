"""Webhooks end to end: a real worker signs and POSTs each call's event to a local receiver;
the independent `standardwebhooks` package verifies every one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import bindparam, text

from models.keys import QUEUE_BULK, QUEUE_MAINTENANCE
from tests.e2e.conftest import WAIT_S, Caller, OwnStack, Stack, new_caller, wait_until
from tests.e2e.receiver import Receiver
from tests.e2e.upstream import Reply

# A module's stack starts with its first test, whose waits are long already.
pytestmark = pytest.mark.timeout(400)


def _sample(text: str, name: str) -> float:
    """The value of one sample in Prometheus' text format (0 if absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def late() -> Receiver:
    """A receiver that is not listening yet (its port is kept for it)."""
    return Receiver()


@pytest.fixture(scope="module")
def hooked(own_stack: OwnStack, receiver: Receiver, late: Receiver) -> Iterator[Stack]:
    # The last attempt comes 45 s after the first: a receiver down for 10 s after the calls
    # ended gets it even when ending the calls took a loaded machine half a minute.
    env = {"PASSTHRU_WEBHOOK_SCHEDULE_S": "0,1,2,4,8,30", "PASSTHRU_SWEEP_EVERY_S": "1"}
    with own_stack("webhook-logs", env) as s:
        s.beat()
        yield s
    late.stop()


@pytest.fixture
def owner(hooked: Stack) -> Iterator[Caller]:
    with new_caller(hooked, "wh") as c:
        yield c


def _endpoint(owner: Caller, url: str) -> str:
    r = owner.http.put("/webhook-endpoint", json={"url": url})
    assert r.status_code == 200, r.text
    return str(r.json()["secret"])


def test_every_call_of_a_1000_call_batch_is_announced_once_and_signed(
    hooked: Stack, owner: Caller, receiver: Receiver
) -> None:
    # Given a tenant endpoint and a 1,000-call batch
    secret = _endpoint(owner, f"{receiver.origin}/passthru")
    owner.connect("slack", "u-hooks", {"access_token": "xoxb-hooks"})
    hooked.upstream.script("GET", "/api/hooks.batch", Reply(200, {"ok": True}))
    calls = [
        {"function": "slack-passthrough-request", "params": {"method": "GET", "url": "hooks.batch"}}
        for _ in range(1000)
    ]
    r = owner.http.post(
        "/function-calls/batch", json={"calls": calls}, headers={"X-User-ID": "u-hooks"}
    )
    assert r.status_code == 202, r.text
    batch_id = r.json()["batch_id"]
    ids = {a["id"] for a in r.json()["accepted"]}

    # When they are done
    def mine() -> list[dict[str, Any]]:
        def ours(e: dict[str, Any]) -> bool:
            if e["type"] == "batch.completed":
                return bool(e["data"]["batch_id"] == batch_id)
            return e["data"]["id"] in ids

        return [e for e in receiver.events(secret) if ours(e)]

    wait_until(lambda: len(mine()) >= 1001, 120, "1,000 call events and the batch event")

    # Then each call's event arrived once, verified, with its result; and the batch's
    events = mine()
    call_events = [e for e in events if e["type"] == "function_call.completed"]
    assert sorted(e["data"]["id"] for e in call_events) == sorted(ids)
    assert len({e["id"] for e in call_events}) == 1000
    assert {e["data"]["network_code"] for e in call_events} == {"200"}
    [batch_event] = [e for e in events if e["type"] == "batch.completed"]

    # And the worker's and the API's metrics carry the run (an attempt is counted once its
    # outcome is stored, a moment after the receiver has the event)
    def worker_metrics() -> str:
        port = hooked.env["PASSTHRU_WORKER_METRICS_PORT"]
        return httpx.get(f"http://127.0.0.1:{port}/metrics").text

    delivered = 'passthru_webhook_attempts_total{outcome="delivered"}'
    wait_until(
        lambda: _sample(worker_metrics(), delivered) >= 1000, 30, "1,000 delivered attempts counted"
    )
    finished = _sample(
        worker_metrics(), 'passthru_calls_finished_total{app="slack",status="completed"}'
    )
    assert finished >= 1000
    assert "passthru_upstream_seconds_bucket" in worker_metrics()
    api_metrics = httpx.get(f"http://127.0.0.1:{hooked.env['PASSTHRU_METRICS_PORT']}/metrics").text
    assert _sample(api_metrics, 'passthru_calls_accepted_total{lane="bulk"}') >= 1000
    assert "passthru_oldest_queued_call_age_seconds" in api_metrics
    assert batch_event["data"] == {
        "batch_id": batch_id,
        "total": 1000,
        "counts": {"completed": 1000},
    }


def test_a_receiver_down_for_ten_seconds_gets_every_event_once(
    hooked: Stack, owner: Caller, late: Receiver
) -> None:
    # Given a receiver that is down when 20 calls end
    secret = _endpoint(owner, f"{late.origin}/in")
    owner.connect("slack", "u-late", {"access_token": "xoxb-late"})
    hooked.upstream.script("GET", "/api/hooks.late", Reply(200, {"ok": True}))
    ids = []
    for _ in range(20):
        r = owner.http.post(
            "/slack-passthrough-request",
            json={"method": "GET", "url": "hooks.late"},
            headers={"X-User-ID": "u-late"},
        )
        ids.append(r.json()["id"])
    for call_id in ids:
        assert owner.wait(call_id)["status"] == "completed"
    # When it comes up 10 s later
    threading.Event().wait(10)
    late.start()
    # Then every event arrives, and each webhook-id is processed once by a receiver that
    # dedupes on it (deliveries after a failure keep their id)
    wait_until(lambda: {e["data"]["id"] for e in late.events(secret)} >= set(ids), 60, "events")
    seen_ids = {e["id"] for e in late.events(secret)}
    assert len(seen_ids) == 20
    attempts = owner.http.get(f"/function-calls/{ids[0]}/deliveries").json()["items"][0]
    assert attempts["status"] == "succeeded"
    assert attempts["attempts"][0]["error"] is not None  # the receiver was down


def test_410_disables_the_endpoint(hooked: Stack, owner: Caller, receiver: Receiver) -> None:
    # Given an endpoint that answers 410 Gone
    _endpoint(owner, f"{receiver.origin}/gone")
    receiver.status = 410
    try:
        owner.connect("slack", "u-gone", {"access_token": "xoxb-gone"})
        hooked.upstream.script("GET", "/api/hooks.gone", Reply(200, {"ok": True}))
        r = owner.http.post(
            "/slack-passthrough-request",
            json={"method": "GET", "url": "hooks.gone"},
            headers={"X-User-ID": "u-gone"},
        )
        call_id = r.json()["id"]
        owner.wait(call_id)

        def disabled() -> bool:
            return owner.http.get("/webhook-endpoint").json()["enabled"] is False

        wait_until(disabled, 30, "the endpoint to be disabled")
    finally:
        receiver.status = 204
    # Then the endpoint says why, and the delivery is not retried
    endpoint = owner.http.get("/webhook-endpoint").json()
    assert endpoint["disabled_reason"] == "the endpoint answered 410 Gone"
    [delivery] = owner.http.get(f"/function-calls/{call_id}/deliveries").json()["items"]
    assert delivery["status"] == "failed"
    assert [a["status_code"] for a in delivery["attempts"]] == [410]


@pytest.fixture
def own_receiver() -> Iterator[Receiver]:
    """A receiver of the test's own: only its endpoint's events, under one secret."""
    r = Receiver().start()
    yield r
    r.stop()


def test_a_deep_bulk_queue_keeps_neither_another_tenants_webhook_nor_the_sweeps_waiting(
    hooked: Stack, own_receiver: Receiver
) -> None:
    # Given a tenant's batch of 3,000 calls of 2 s each: 30 chunks, of which the worker runs
    # five at a time (its share of the calls held), so their messages wait on the bulk queue
    # for the whole drain
    hooked.upstream.script("GET", "/api/deep.slow", Reply(200, {"ok": True}, delay_s=2))
    hooked.upstream.script("GET", "/api/deep.quick", Reply(200, {"ok": True}))
    broker = redis.Redis.from_url(hooked.redis.url)
    with new_caller(hooked, "deep") as deep, new_caller(hooked, "told") as told:
        deep.connect("slack", "u-deep", {"access_token": "xoxb-deep"})
        told.connect("slack", "u-told", {"access_token": "xoxb-told"})
        secret = _endpoint(told, f"{own_receiver.origin}/told")
        params = {"method": "GET", "url": "deep.slow"}
        call = {"function": "slack-passthrough-request", "params": params}
        backlog: list[str] = []
        try:
            for _ in range(3):  # a batch holds at most 1,000 calls
                r = deep.http.post(
                    "/function-calls/batch",
                    json={"calls": [call] * 1000},
                    headers={"X-User-ID": "u-deep"},
                )
                assert r.status_code == 202, r.text
                assert r.json()["rejected"] == []
                backlog += [a["id"] for a in r.json()["accepted"]]
            wait_until(lambda: broker.llen(QUEUE_BULK) >= 15, WAIT_S, "the bulk queue deep")
            # When another tenant's call ends
            r = told.http.post(
                "/slack-passthrough-request",
                json={"method": "GET", "url": "deep.quick"},
                headers={"X-User-ID": "u-told"},
            )
            call_id = r.json()["id"]
            assert told.wait(call_id)["status"] == "completed"

            # Then its event arrives while most of the batch still waits for a thread (in
            # the former order, after the bulk queue had emptied: 800 calls or fewer left)
            def told_of() -> bool:
                return any(e["data"].get("id") == call_id for e in own_receiver.events(secret))

            wait_until(told_of, WAIT_S, "the other tenant's event")
            assert _still_queued(hooked, backlog) >= 1500
            # And the sweeps beat sends every second are taken as they come
            assert broker.llen(QUEUE_MAINTENANCE) <= 2
        finally:
            _cancel(hooked, backlog)


def _still_queued(stack: Stack, ids: list[str]) -> int:
    query = text("SELECT count(*) FROM function_call WHERE id IN :ids AND status = 'queued'")
    with stack.engine.connect() as conn:
        return int(
            conn.execute(
                query.bindparams(bindparam("ids", expanding=True)), {"ids": ids}
            ).scalar_one()
        )


def _cancel(stack: Stack, ids: list[str]) -> None:
    """Leave no backlog for the module's next test."""
    query = text(
        "UPDATE function_call SET status = 'cancelled' "
        "WHERE id IN :ids AND status IN ('queued', 'retrying')"
    )
    with stack.engine.begin() as conn:
        conn.execute(query.bindparams(bindparam("ids", expanding=True)), {"ids": ids})
