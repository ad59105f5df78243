"""Global rate limits with two worker processes on a real Redis: ceilings held across
processes, pauses obeyed by every worker, no head-of-line blocking, interactive first.

These tests assert order and ceilings, never durations."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest
from sqlalchemy import Engine, bindparam, text

from models.accounts.tenants import create_tenant
from models.broker import bulk_queue
from tests.e2e.conftest import Caller, OwnStack, Stack, new_caller, wait_until
from tests.e2e.upstream import Reply

# `once` (SQLite pass only): the limits, pauses and lanes live in Redis; calls handed back to the
# database for a far slot are tested on Postgres in tests/worker/test_admission.py and
# tests/worker/test_sweeper.py.
# A module's stack starts with its first test, whose waits are long already.
pytestmark = [pytest.mark.once, pytest.mark.timeout(400)]

FINAL = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def limited(own_stack: OwnStack) -> Iterator[Stack]:
    """A stack of its own with two worker processes sharing one Redis, and a cap of 100
    calls per second on each tenant."""
    env = {"PASSTHRU_SWEEP_EVERY_S": "2", "PASSTHRU_TENANT_RATE_LIMIT": "100/1/10"}
    with own_stack("limits-logs", env) as s:
        s.worker("worker-2")
        s.beat()
        yield s


@pytest.fixture
def owner(limited: Stack) -> Iterator[Caller]:
    with new_caller(limited, "rl") as c:
        yield c


def counts(engine: Engine, ids: list[str]) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status, count(*) AS n FROM function_call WHERE id IN :ids GROUP BY status"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": ids},
        )
        return {r.status: r.n for r in rows}


def batch(owner: Caller, app: str, user: str, url: str, n: int) -> list[str]:
    """Submit `n` GETs to `url` in batches of 1,000; return their ids."""
    ids: list[str] = []
    for start in range(0, n, 1000):
        calls = [
            {
                "function": f"{app}-passthrough-request",
                "params": {"method": "GET", "url": f"{url}?i={i}"},
            }
            for i in range(start, min(n, start + 1000))
        ]
        r = owner.http.post(
            "/function-calls/batch", json={"calls": calls}, headers={"X-User-ID": user}
        )
        assert r.status_code == 202, r.text
        assert r.json()["rejected"] == []
        ids += [a["id"] for a in r.json()["accepted"]]
    return ids


def most_in_any_window(times: list[float], window_s: float) -> int:
    times = sorted(times)
    most, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window_s:
            j += 1
        most = max(most, i - j + 1)
    return most


# Arrival times at the upstream carry the scheduling and network jitter of a shared machine
# (seen here: up to about 100 ms; a stalled worker sends its overdue slots at once when it
# runs again), so sends booked just outside a window can land inside it. Over a 3 s window
# the limiter's own slots allow the burst plus 30; a stall of up to half a second at each
# edge adds five sends each. A limiter that did not hold would put about 200.
WINDOW_S = 3.0
RATE, BURST, JITTER_SENDS = 10, 2, 10


def test_ten_per_second_holds_across_two_workers(limited: Stack, owner: Caller) -> None:
    # Given an app limited to 10 calls per second with a burst of 2, and two workers
    owner.connect("tenps", "u-ten", {"api_key": "k-ten"})
    limited.upstream.script("GET", "/tenps/items", Reply(200, {"ok": True}))
    before = len(limited.upstream.requests_to("/tenps/items"))

    # When 200 calls are submitted at once
    ids = batch(owner, "tenps", "u-ten", "items", 200)
    wait_until(lambda: counts(limited.engine, ids).get("completed") == 200, 120, "200 calls")

    # Then every one completed, each sent once, and the upstream never saw more than the
    # limit plus the burst in any window of (about) a second
    seen = limited.upstream.requests_to("/tenps/items")[before:]
    assert len(seen) == 200
    times = sorted(s.at for s in seen)
    gaps_ms = [round((b - a) * 1000) for a, b in itertools.pairwise(times)]
    assert most_in_any_window(times, WINDOW_S) <= RATE * WINDOW_S + BURST + JITTER_SENDS, gaps_ms


def test_a_429_pauses_the_key_for_every_worker(limited: Stack, owner: Caller) -> None:
    # Given an upstream that answers the first call with 429 and Retry-After: 3
    account = owner.connect("hushed", "u-hush", {"api_key": "k-hush"})
    limited.upstream.script(
        "GET",
        "/hushed/items",
        Reply(429, {"slow": "down"}, headers={"Retry-After": "3"}),
        Reply(200, {"ok": True}),
    )
    headers = {"X-User-ID": "u-hush"}
    first = owner.http.post(
        "/hushed-passthrough-request", json={"method": "GET", "url": "items"}, headers=headers
    ).json()["id"]

    # When the pause is known (the tenant sees it) and 10 more calls are submitted
    def paused_until() -> datetime | None:
        items = owner.http.get("/rate-limits").json()["items"]
        mine = [i for i in items if i["connected_account_id"] == account["id"]]
        return datetime.fromisoformat(mine[0]["paused_until"]) if mine else None

    wait_until(lambda: paused_until() is not None, 30, "the pause")
    until = paused_until()
    assert until is not None
    ids = [
        owner.http.post(
            "/hushed-passthrough-request", json={"method": "GET", "url": "items"}, headers=headers
        ).json()["id"]
        for _ in range(10)
    ]

    # Then all 11 complete, and after the 429 no request reached the upstream before the
    # pause ended, whichever worker sent it
    for call_id in [first, *ids]:
        assert owner.wait(call_id)["status"] == "completed"
    seen = limited.upstream.requests_to("/hushed/items")
    assert [s.at for s in seen[1:] if s.at < until.timestamp()] == []
    assert len(seen) == 12  # the 429, the first call's retry, and the 10 others
    waited = owner.wait(ids[0])["attempts"][0]
    assert waited["rate_wait_reason"] == "paused by the upstream"
    assert waited["rate_wait_ms"] > 0


def test_a_limited_backlog_does_not_hold_back_other_apps(limited: Stack, owner: Caller) -> None:
    # Given 2,000 calls queued to an app limited to 2 per second
    owner.connect("twops", "u-two", {"api_key": "k-two"})
    owner.connect("tenps", "u-two", {"api_key": "k-ten2"})
    limited.upstream.script("GET", "/twops/items", Reply(200, {"ok": True}))
    backlog = batch(owner, "twops", "u-two", "items", 2000)

    # When a call to another app is made
    r = owner.http.post(
        "/tenps-passthrough-request",
        json={"method": "GET", "url": "items"},
        headers={"X-User-ID": "u-two", "Prefer": "wait=30"},
    )

    # Then it completes while nearly all of the backlog still waits its turn
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed"
    done = counts(limited.engine, backlog)
    assert sum(done.get(s, 0) for s in FINAL) < 100, done
    _cancel_all(limited.engine, backlog)


def test_interactive_calls_do_not_wait_behind_a_large_batch(limited: Stack, owner: Caller) -> None:
    # Given a 5,000-call batch to an upstream that takes 50 ms per answer
    owner.connect("slack", "u-lane", {"access_token": "xoxb-lane"})
    limited.upstream.script("GET", "/api/lane.bulk", Reply(200, {"ok": True}, delay_s=0.05))
    bulk = batch(owner, "slack", "u-lane", "lane.bulk", 5000)

    # When a call is made with Prefer: wait
    r = owner.http.post(
        "/slack-passthrough-request",
        json={"method": "GET", "url": "conversations.list"},
        headers={"X-User-ID": "u-lane", "Prefer": "wait=30"},
    )

    # Then it completes while most of the batch is still waiting
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed"
    done = counts(limited.engine, bulk)
    assert sum(done.get(s, 0) for s in FINAL) < 2500, done
    _cancel_all(limited.engine, bulk)


def test_one_tenants_backlog_does_not_starve_another(limited: Stack, owner: Caller) -> None:
    # Given one tenant with 3,000 calls queued (30 s of its cap of 100 per second)
    owner.connect("slack", "u-big", {"access_token": "xoxb-big"})
    limited.upstream.script("GET", "/api/fair.big", Reply(200, {"ok": True}))
    backlog = batch(owner, "slack", "u-big", "fair.big", 3000)

    # When another tenant sends a batch of 20 calls
    with new_caller(limited, "rl-small") as other:
        other.connect("slack", "u-small", {"access_token": "xoxb-small"})
        small = batch(other, "slack", "u-small", "fair.small", 20)
        wait_until(lambda: counts(limited.engine, small).get("completed") == 20, 60, "20 calls")

    # Then they complete while most of the first tenant's backlog still waits its turn
    done = counts(limited.engine, backlog)
    assert sum(done.get(s, 0) for s in FINAL) < 1500, done
    _cancel_all(limited.engine, backlog)


@pytest.mark.parametrize("same_shard", [False, True], ids=["another-shard", "same-shard"])
def test_without_a_tenant_cap_another_tenants_batch_is_taken_beside_a_backlog(
    stack: Stack, same_shard: bool
) -> None:
    # Given two tenants whose batches' shards of the bulk lane differ (or are the same), no
    # per-tenant rate limit (the default), and one tenant with 3,000 calls queued (1 s each:
    # the backlog takes longer to drain than the API takes to publish it, however loaded the
    # machine)
    path = f"/api/turn.{same_shard}"
    with _two_tenants(stack, same=same_shard) as (big, small):
        big.connect("slack", "u-big", {"access_token": "xoxb-big"})
        small.connect("slack", "u-small", {"access_token": "xoxb-small"})
        stack.upstream.script("GET", path, Reply(200, {"ok": True}, delay_s=1))
        backlog = batch(big, "slack", "u-big", path.removeprefix("/api/"), 3000)

        # When the other tenant sends a batch of 20 calls
        few = batch(small, "slack", "u-small", "turn.small", 20)
        wait_until(lambda: counts(stack.engine, few).get("completed") == 20, 60, "20 calls")

    # Then they complete while most of the backlog still waits: tenants take turns, whatever
    # their shards (with one queue for every tenant, or a shard's messages taken in arrival
    # order, they came after all of it)
    done = counts(stack.engine, backlog)
    assert sum(done.get(s, 0) for s in FINAL) < 1500, done
    _cancel_all(stack.engine, backlog)


def test_a_tenants_slow_batch_never_holds_every_connection(stack: Stack) -> None:
    # Given a tenant whose 300 batched calls take seconds each: more than a worker process
    # sends at once (256 by default)
    with _two_tenants(stack) as (slow, quick):
        slow.connect("slack", "u-slow", {"access_token": "xoxb-slow"})
        quick.connect("slack", "u-quick", {"access_token": "xoxb-quick"})
        stack.upstream.script("GET", "/api/wire.slow", Reply(200, {"ok": True}, delay_s=3))
        backlog = batch(slow, "slack", "u-slow", "wire.slow", 300)
        wait_until(
            lambda: counts(stack.engine, backlog).get("running", 0) == 300, 30, "300 running"
        )

        # When another tenant's batch of 20 comes
        few = batch(quick, "slack", "u-quick", "wire.quick", 20)
        wait_until(lambda: counts(stack.engine, few).get("completed") == 20, 60, "20 calls")

    # Then it is done before the first of the slow calls (with one line for every tenant
    # on the wire, it waited for the first 256 of them to end)
    done = counts(stack.engine, backlog)
    assert sum(done.get(s, 0) for s in FINAL) < 100, done
    _cancel_all(stack.engine, backlog)


def test_a_tenants_backlog_never_holds_every_celery_thread(own_stack: OwnStack) -> None:
    # Given a worker of eight Celery threads (`-c 8`), and a tenant's twelve small batches
    # whose calls take seconds each: more messages than threads
    with own_stack("thread-share-logs") as s:
        s.upstream.script("GET", "/api/threads.slow", Reply(200, {"ok": True}, delay_s=6))
        with _two_tenants(s) as (slow, quick):
            slow.connect("slack", "u-slow", {"access_token": "xoxb-slow"})
            quick.connect("slack", "u-quick", {"access_token": "xoxb-quick"})
            backlog = [
                call_id
                for _ in range(12)
                for call_id in batch(slow, "slack", "u-slow", "threads.slow", 1)
            ]
            wait_until(lambda: counts(s.engine, backlog).get("running", 0) >= 6, 30, "6 running")

            # When another tenant's batch comes
            few = batch(quick, "slack", "u-quick", "threads.quick", 2)
            wait_until(lambda: counts(s.engine, few).get("completed") == 2, 60, "2 calls")

            # Then it is done before any of the slow calls: the first tenant holds six of
            # the eight threads, and the other two wait without taking its chunks (with
            # every thread the first tenant's, it waited for one of its calls)
            done = counts(s.engine, backlog)
            assert sum(done.get(status, 0) for status in FINAL) == 0, done
            assert done.get("running", 0) == 6, done
            _cancel_all(s.engine, backlog)


@contextmanager
def _two_tenants(stack: Stack, same: bool = False) -> Iterator[tuple[Caller, Caller]]:
    """Two new tenants whose batches' shard of the bulk lane (models/broker.py:
    bulk_queue, a message with a countdown's) differs, or is the same."""
    first, first_key = create_tenant(stack.engine, "big")
    second, second_key = create_tenant(stack.engine, "small")
    while (bulk_queue(second.id) == bulk_queue(first.id)) != same:
        second, second_key = create_tenant(stack.engine, "small")
    with stack.client(first_key) as a, stack.client(second_key) as b:
        yield Caller(first_key, first.id, a), Caller(second_key, second.id, b)


def _cancel_all(engine: Engine, ids: list[str]) -> None:
    """Leave no backlog for the next test (the cancel endpoint one call at a time would
    take longer than the test)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE function_call SET status = 'cancelled' "
                "WHERE id IN :ids AND status IN ('queued', 'retrying')"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": ids},
        )


def test_a_tenants_slow_calls_never_hold_every_lane_thread(own_stack: OwnStack) -> None:
    # Given a worker whose interactive lane has four threads, and a tenant with twelve single
    # calls waiting or running that take seconds each
    with own_stack("share-logs", {"PASSTHRU_WORKER_CONCURRENCY": "4"}) as s:
        s.upstream.script("GET", "/api/share.slow", Reply(200, {"ok": True}, delay_s=3))
        slow_call = {"method": "GET", "url": "https://slack.com/api/share.slow"}
        with new_caller(s, "slow") as slow, new_caller(s, "quick") as quick:
            slow.connect("slack", "u-slow", {"access_token": "xoxb-slow"})
            quick.connect("slack", "u-quick", {"access_token": "xoxb-quick"})
            async_call = {"X-User-ID": "u-slow", "Prefer": "respond-async"}
            ids = [
                slow.http.post(
                    "/slack-passthrough-request", json=slow_call, headers=async_call
                ).json()["id"]
                for _ in range(12)
            ]
            wait_until(
                lambda: counts(s.engine, ids).get("running", 0) >= 3, 30, "slow calls running"
            )

            # When another tenant calls and waits for the answer
            r = quick.http.post(
                "/slack-passthrough-request",
                json={"method": "GET", "url": "https://slack.com/api/share.quick"},
                headers={"X-User-ID": "u-quick", "Prefer": "wait=30"},
            )

            # Then it is answered while most of the first tenant's calls still wait their
            # turn (with one list for all, it came after every one of them)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "completed"
            left = counts(s.engine, ids)
            assert left.get("queued", 0) >= 4, left
            _cancel_all(s.engine, ids)
