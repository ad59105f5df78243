"""Failover: a worker process holds its calls while its heartbeat renews its lease; once
the renewals stop, the next sweep takes its running calls back and publishes again what it
held and had not run, whatever their onward timeout and without reading the backlog."""

# The sweeper tests' fixtures are imported by name, and pytest passes them by that name.
# ruff: noqa: F811

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import fakeredis
import pytest
from sqlalchemy import Engine, update

from models.calls.states import CallStatus
from models.db.tables import ConnectedAccount, FunctionCall, WorkerProcess
from models.keys import QUEUE_BULK, QUEUE_INTERACTIVE
from tests.worker.factories import attempts, load
from tests.worker.test_sweeper import (  # noqa: F401  (its fixtures, shared)
    NOW,
    Published,
    engine,
    make_call,
    published,
    redis_with_epoch,
    runtime,
    sweep,
)
from worker.calls.store import publish_or_forget
from worker.held import RedisHolds
from worker.liveness import Heartbeat, Identity, expired, forget, renew
from worker.runtime import Runtime
from worker.sweeper import SweepReport

LEASE_S = 15.0
DEAD = Identity("host-a:101:aaaaaa", "host-a", 101)
ALIVE = Identity("host-b:202:bbbbbb", "host-b", 202)


@pytest.fixture
def holds(redis_with_epoch: fakeredis.FakeRedis) -> RedisHolds:
    return RedisHolds(redis_with_epoch)


@pytest.fixture
def rt(runtime: Runtime, holds: RedisHolds) -> Runtime:
    return replace(runtime, holds=holds)


@pytest.fixture
def workers(engine: Engine) -> None:
    """One process whose last renewal ran out a second ago, one renewed just now."""
    renew(engine, DEAD, NOW - timedelta(seconds=LEASE_S + 1), LEASE_S)
    renew(engine, ALIVE, NOW, LEASE_S)


def in_flight(
    engine: Engine,
    account: ConnectedAccount,
    worker: Identity | None,
    **kw: object,
) -> FunctionCall:
    """A call running on `worker`, far from its attempt's deadline (a slow upstream)."""
    return make_call(
        engine,
        account,
        status=CallStatus.RUNNING,
        published_at=NOW - timedelta(seconds=20),
        lease_expires_at=NOW + timedelta(seconds=90),
        attempt_count=1,
        claimed_by=worker.id if worker else None,
        **kw,
    )


def rows(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        table = WorkerProcess.__table__  # type: ignore[attr-defined]
        return {r.id for r in conn.execute(table.select())}


# --- the lease --------------------------------------------------------------------------------


def test_a_renewal_keeps_the_process_alive_and_its_end_shows(engine: Engine) -> None:
    renew(engine, DEAD, NOW - timedelta(seconds=30), LEASE_S)
    assert expired(engine, NOW, 10) == [DEAD.id]
    renew(engine, DEAD, NOW, LEASE_S)  # it beat again
    assert expired(engine, NOW, 10) == []
    assert expired(engine, NOW + timedelta(seconds=LEASE_S + 1), 10) == [DEAD.id]


def test_forgetting_keeps_a_process_that_beat_again(engine: Engine) -> None:
    renew(engine, DEAD, NOW - timedelta(seconds=30), LEASE_S)
    renew(engine, DEAD, NOW, LEASE_S)
    forget(engine, [DEAD.id], NOW)
    assert rows(engine) == {DEAD.id}


# --- running calls ----------------------------------------------------------------------------


def test_a_dead_process_s_running_calls_move_on_before_their_deadline(
    engine: Engine,
    account: ConnectedAccount,
    rt: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
    workers: None,
) -> None:
    # Given a GET and a POST in flight on a process whose heartbeat stopped, and a GET on a
    # live one, all far from their attempts' deadline
    get = in_flight(engine, account, DEAD)
    post = in_flight(engine, account, DEAD, method="POST")
    alive = in_flight(engine, account, ALIVE)
    # When the sweeper runs
    report = sweep(rt, redis_with_epoch)
    # Then the dead process's GET runs again and its POST ends without being sent again
    assert load(engine, get.id).status is CallStatus.RETRYING
    assert published.ids == [get.id]
    stored = load(engine, post.id)
    assert (stored.status, stored.error) == (CallStatus.FAILED, "outcome_unknown")
    # and each lost attempt says the worker was lost
    assert [a.error for a in attempts(engine, get.id)] == ["worker_lost"]
    assert [a.error for a in attempts(engine, post.id)] == ["worker_lost"]
    # while the live process keeps its call, and the dead one is forgotten
    assert load(engine, alive.id).status is CallStatus.RUNNING
    assert attempts(engine, alive.id) == []
    assert rows(engine) == {ALIVE.id}
    assert report == SweepReport(workers_lost=1, recovered=1, abandoned=1)


def test_a_call_whose_process_left_no_row_is_taken_back(
    engine: Engine,
    account: ConnectedAccount,
    rt: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
) -> None:
    # Given a call claimed by a process that stopped and gave up its row
    call = in_flight(engine, account, Identity("gone:1:cccccc", "gone", 1))
    # When the sweeper runs, the call runs again
    sweep(rt, redis_with_epoch)
    assert load(engine, call.id).status is CallStatus.RETRYING


def test_a_call_claimed_without_a_heartbeat_waits_for_its_deadline(
    engine: Engine,
    account: ConnectedAccount,
    rt: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
) -> None:
    # Given a call claimed before processes had leases (no claimed_by)
    call = in_flight(engine, account, None)
    sweep(rt, redis_with_epoch)
    # Then only its deadline takes it back
    assert load(engine, call.id).status is CallStatus.RUNNING


def test_a_live_process_stuck_past_an_attempt_s_deadline_loses_that_call(
    engine: Engine,
    account: ConnectedAccount,
    rt: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    workers: None,
) -> None:
    call = in_flight(engine, account, ALIVE)
    # Given a call on a live process, past its attempt's deadline (the process is stuck)
    with engine.begin() as conn:
        conn.execute(
            update(FunctionCall)
            .where(FunctionCall.id == call.id)  # type: ignore[arg-type]
            .values(lease_expires_at=NOW - timedelta(seconds=1))
        )
    # When the sweeper runs, the call is taken back from it
    sweep(rt, redis_with_epoch)
    assert load(engine, call.id).status is CallStatus.RETRYING
    assert [a.error for a in attempts(engine, call.id)] == ["lease_expired"]


# --- what a dead process held -------------------------------------------------------------------


def test_what_a_dead_process_held_is_published_again_at_once(
    engine: Engine,
    account: ConnectedAccount,
    rt: Runtime,
    holds: RedisHolds,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
    workers: None,
) -> None:
    # Given a dead process that held, unrun: a prefetched bulk message of two queued calls
    # (published just now, so the stale-message rule would wait minutes), a countdown for a
    # retry due in a minute, an interactive id its lane had popped, and a call finished since
    recent = NOW - timedelta(seconds=5)
    batch = [
        make_call(engine, account, status=CallStatus.QUEUED, published_at=recent, batch_id="b_1")
        for _ in range(2)
    ]
    retry = make_call(
        engine,
        account,
        status=CallStatus.RETRYING,
        published_at=recent,
        next_attempt_at=NOW + timedelta(minutes=1),
        attempt_count=1,
    )
    popped = make_call(engine, account, status=CallStatus.QUEUED, published_at=recent)
    done = make_call(engine, account, status=CallStatus.COMPLETED, published_at=recent)
    holds.hold(DEAD.id, "m-1", [c.id for c in batch])
    holds.hold(DEAD.id, "m-2", [retry.id, done.id])
    redis_with_epoch.rpush(f"passthru:held-lane:{DEAD.id}", popped.id)
    # and a live process holding a queued call of its own
    mine = make_call(engine, account, status=CallStatus.QUEUED, published_at=recent)
    holds.hold(ALIVE.id, "m-3", [mine.id])
    # When the sweeper runs
    report = sweep(rt, redis_with_epoch)
    # Then the queued calls go out again now, each on its lane
    assert sorted(published.ids) == sorted([batch[0].id, batch[1].id, popped.id])
    assert published.queue_of(batch[0].id) == QUEUE_BULK
    assert published.queue_of(popped.id) == QUEUE_INTERACTIVE
    # the retry is left to be published when due (no early message), the finished call and
    # the live process's alone
    assert load(engine, retry.id).published_at is None
    assert report.held == 3
    assert report.workers_lost == 1
    assert holds.take(DEAD.id) == []  # taken once
    assert holds.take(ALIVE.id) == [mine.id]
    # And when the retry is due, it is published
    later = replace(rt, clock=lambda: NOW + timedelta(minutes=1))
    published.batches.clear()
    sweep(later, redis_with_epoch)
    assert published.ids == [retry.id]


def test_a_dead_process_is_kept_until_what_it_held_can_be_read(
    engine: Engine,
    account: ConnectedAccount,
    rt: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    workers: None,
) -> None:
    # Given Redis cannot be read when the dead process is found
    class Unreadable:
        def take(self, worker_id: str) -> list[str] | None:
            return None

    call = in_flight(engine, account, DEAD)
    report = sweep(replace(rt, holds=Unreadable()), redis_with_epoch)
    # Then its running call still moves on (the database knows it), and the process is kept
    # so the next sweep publishes what it held
    assert load(engine, call.id).status is CallStatus.RETRYING
    assert report.workers_lost == 0
    assert rows(engine) == {DEAD.id, ALIVE.id}


def test_a_retry_the_broker_refused_is_published_by_the_sweep_once_due(
    engine: Engine,
    account: ConnectedAccount,
    rt: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
) -> None:
    # Given a retry stored as published for its due time (with its result), whose countdown
    # message the broker then refused (Redis restarting, say)
    due = NOW - timedelta(seconds=1)
    call = make_call(
        engine,
        account,
        status=CallStatus.RETRYING,
        published_at=due,
        next_attempt_at=due,
        attempt_count=1,
    )
    published.ok = False
    publish_or_forget(engine, published, [call.id], QUEUE_INTERACTIVE, 3, {})
    published.ok, published.batches = True, []
    # When the sweeper runs once it is due
    sweep(rt, redis_with_epoch)
    # Then it is published now, not after PASSTHRU_REPUBLISH_AFTER_S
    assert published.ids == [call.id]


@pytest.mark.parametrize("broker_up", [True, False])
def test_unclaimed_messages_are_republished_page_by_page_and_a_refusal_ends_the_sweep(
    engine: Engine,
    account: ConnectedAccount,
    rt: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
    monkeypatch: pytest.MonkeyPatch,
    broker_up: bool,
) -> None:
    # Given five queued calls: three never published, two published too long ago, read two
    # at a time
    monkeypatch.setattr("worker.sweeper.SWEEP_BATCH", 2)
    never = [make_call(engine, account, status=CallStatus.QUEUED) for _ in range(3)]
    old = [
        make_call(engine, account, status=CallStatus.QUEUED, published_at=NOW - timedelta(hours=1))
        for _ in range(2)
    ]
    published.ok = broker_up
    # When the sweeper runs
    report = sweep(rt, redis_with_epoch)
    if broker_up:
        # Then each is published once, all in this sweep
        assert sorted(published.ids) == sorted(c.id for c in never + old)
        assert report.republished == 5
    else:
        # Then a broker that refuses ends the sweep's republishing (the next sweep tries again)
        assert report.republished == 0
        assert len(published.ids) <= 4


def test_a_heartbeat_that_fails_keeps_beating() -> None:
    # Given a renewal that fails twice (the database away), then works
    outcomes = [RuntimeError("away"), OSError("away"), None, None]
    beats: list[int] = []

    def beat() -> None:
        beats.append(1)
        failure = outcomes.pop(0) if outcomes else None
        if failure is not None:
            raise failure

    heart = Heartbeat(beat, 0.01)
    heart.start()
    # Then the thread goes on beating after the failures
    deadline = time.monotonic() + 10
    while len(beats) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    heart.stop()
    assert len(beats) >= 4
