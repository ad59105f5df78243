"""No call lost when processes die: a worker killed mid-call, Redis restarted empty (with
calls queued, and with webhook events waiting)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import Engine, text

from models.keys import HOOKS_DUE_OF_PREFIX
from tests.e2e.conftest import Caller, OwnStack, Stack, new_caller, wait_until
from tests.e2e.receiver import Receiver
from tests.e2e.upstream import Reply

FINAL = ("completed", "failed", "cancelled")
RECOVERY_ENV = {
    "PASSTHRU_SWEEP_EVERY_S": "1",
    "PASSTHRU_LEASE_S": "6",
    # The lease must outlast every exchange.
    "PASSTHRU_MAX_TIMEOUT_S": "5",
    "PASSTHRU_CONNECT_TIMEOUT_S": "5",
    "PASSTHRU_READ_TIMEOUT_S": "5",
    "PASSTHRU_TIMEOUT_S": "5",
    "PASSTHRU_REPUBLISH_AFTER_S": "5",
}


@pytest.fixture(scope="module")
def recovery(own_stack: OwnStack) -> Iterator[Stack]:
    """A stack of its own (its Redis gets restarted), with beat sweeping every second."""
    with own_stack("recovery-logs", RECOVERY_ENV) as s:
        s.beat()
        yield s


@pytest.fixture
def owner(recovery: Stack) -> Iterator[Caller]:
    with new_caller(recovery, "rec") as c:
        yield c


def statuses(engine: Engine, ids: list[str]) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, status, error FROM function_call WHERE id IN :ids").bindparams(
                __import__("sqlalchemy").bindparam("ids", expanding=True)
            ),
            {"ids": ids},
        )
        return {r.id: (r.status, r.error) for r in rows}


def submit(owner: Caller, user: str, method: str, url: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        body = {"method": method, "url": url, **({"body": {"i": i}} if method == "POST" else {})}
        r = owner.http.post("/slack-passthrough-request", json=body, headers={"X-User-ID": user})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


def test_worker_killed_mid_call_loses_nothing_and_sends_no_post_twice(
    recovery: Stack, owner: Caller
) -> None:
    # Given 50 slow calls in flight on one worker, half of them POSTs
    recovery.upstream.script("GET", "/api/slow.get", Reply(200, {"ok": 1}, delay_s=3))
    recovery.upstream.script("POST", "/api/slow.post", Reply(200, {"ok": 1}, delay_s=3))
    owner.connect("slack", "u-kill", {"access_token": "xoxb-kill"})
    gets = submit(owner, "u-kill", "GET", "slow.get", 25)
    posts = submit(owner, "u-kill", "POST", "slow.post", 25)
    wait_until(
        lambda: any(s == "running" for s, _ in statuses(recovery.engine, gets + posts).values()),
        30,
        "calls to start",
    )

    # When the worker is killed with -9 and a new one starts
    recovery.procs["worker"].kill()
    recovery.worker("worker-after-kill")

    # Then every call ends: GETs completed, POSTs that may have been sent never re-sent
    wait_until(
        lambda: all(s in FINAL for s, _ in statuses(recovery.engine, gets + posts).values()),
        90,
        "every call to end",
    )
    final = statuses(recovery.engine, gets + posts)
    assert {final[i][0] for i in gets} == {"completed"}
    assert all(final[i] in (("completed", None), ("failed", "outcome_unknown")) for i in posts)
    sent = [s.json()["i"] for s in recovery.upstream.requests_to("/api/slow.post")]
    assert len(sent) == len(set(sent)), "a POST reached the upstream twice"


def test_sigterm_lets_a_worker_finish_the_calls_it_holds(recovery: Stack, owner: Caller) -> None:
    # Given 10 calls on the wire, each answered after 2 s
    recovery.upstream.script("GET", "/api/slow.term", Reply(200, {"ok": 1}, delay_s=2))
    owner.connect("slack", "u-term", {"access_token": "xoxb-term"})
    ids = submit(owner, "u-term", "GET", "slow.term", 10)
    wait_until(
        lambda: len(recovery.upstream.requests_to("/api/slow.term")) == 10, 30, "calls on the wire"
    )

    # When every worker is asked to stop (SIGTERM, as Kubernetes and compose do)
    workers = [n for n, p in recovery.procs.items() if n.startswith("worker") and p.alive()]
    assert workers
    for name in workers:
        proc = recovery.processes.stop(name)
        assert proc.process.returncode == 0, proc.output()[-2000:]

    # Then they finished what they held before exiting: every call completed on its first
    # attempt, none left running for the sweeper
    final = statuses(recovery.engine, ids)
    assert {s for s, _ in final.values()} == {"completed"}
    assert len(recovery.upstream.requests_to("/api/slow.term")) == 10
    recovery.worker("worker-after-term")


def test_redis_restarted_empty_with_calls_queued_loses_nothing(
    recovery: Stack, owner: Caller
) -> None:
    # Given 100 calls queued while no worker runs
    for name in [n for n in recovery.procs if n.startswith("worker")]:
        recovery.processes.stop(name)
    owner.connect("slack", "u-redis", {"access_token": "xoxb-redis"})
    ids = submit(owner, "u-redis", "GET", "conversations.list", 100)

    # When Redis restarts without persistence (the queued messages are gone)...
    recovery.redis.restart()
    recovery.worker("worker3")

    # Then the sweeper publishes them again and every call completes
    wait_until(
        lambda: all(s in FINAL for s, _ in statuses(recovery.engine, ids).values()),
        90,
        "every call to end",
    )
    assert {s for s, _ in statuses(recovery.engine, ids).values()} == {"completed"}


def test_webhook_events_waiting_in_redis_when_it_restarts_empty_all_arrive(
    recovery: Stack, owner: Caller
) -> None:
    # Given a tenant endpoint, and a worker that runs calls but takes no webhook deliveries,
    # so each finished call's event waits on the tenant's list in Redis
    receiver = Receiver().start()
    try:
        r = owner.http.put("/webhook-endpoint", json={"url": f"{receiver.origin}/hooks"})
        assert r.status_code == 200, r.text
        secret = r.json()["secret"]
        for name in [n for n in recovery.procs if n.startswith("worker")]:
            recovery.processes.stop(name)
        calls_only = "passthru.interactive,passthru.bulk,passthru.maintenance"
        recovery.processes.start_worker("worker-calls-only", "-Q", calls_only, "-c", "8")
        recovery.upstream.script("GET", "/api/hooks.wait", Reply(200, {"ok": 1}))
        owner.connect("slack", "u-hooks", {"access_token": "xoxb-hooks"})
        ids = submit(owner, "u-hooks", "GET", "hooks.wait", 20)
        wait_until(
            lambda: all(s == "completed" for s, _ in statuses(recovery.engine, ids).values()),
            60,
            "every call to complete",
        )
        lists = redis.Redis.from_url(recovery.redis.url)
        wait_until(
            lambda: lists.llen(f"{HOOKS_DUE_OF_PREFIX}{owner.tenant_id}") == 20,
            30,
            "the events on the tenant's list",
        )
        lists.close()
        assert receiver.got == []

        # When Redis restarts without persistence (the lists are gone), and a worker on
        # every lane starts
        recovery.redis.restart()
        recovery.processes.stop("worker-calls-only")
        recovery.worker("worker-after-redis")

        # Then the sweeper publishes every pending delivery again, and each event arrives (a
        # test of what the receiver sees; which rule of the sweeper's publishes them, here
        # with PASSTHRU_REPUBLISH_AFTER_S at 5 s, tests/worker/test_deliveries.py says)
        expected = {f"msg_{i}" for i in ids}
        wait_until(
            lambda: {e["id"] for e in receiver.events(secret)} >= expected,
            90,
            "every event",
        )
    finally:
        receiver.stop()
