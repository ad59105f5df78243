"""The sweeper: every accepted call reaches a final state, even if Redis or a worker is lost."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import httpx
import pytest
from sqlalchemy import Engine

from models.broker import NO_TENANTS
from models.broker_epoch import RedisEpoch
from models.calls.states import CallStatus
from models.catalog.apps import Catalog
from models.crypto.secrets import Vault
from models.db.ids import new_id
from models.db.tables import ConnectedAccount, FunctionCall
from models.keys import KEY_BROKER_EPOCH, QUEUE_BULK, QUEUE_INTERACTIVE
from tests.worker import factories
from tests.worker.factories import attempts, load, make_runtime
from worker.runtime import Runtime
from worker.sweeper import PUBLISH_GRACE, SweepReport
from worker.sweeper import sweep as sweep_with

NOW = datetime.now(UTC).replace(microsecond=0)


class Published:
    """The sweeper's publisher: records what would reach the broker."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[str], str]] = []
        self.deliveries: list[str] = []
        self.tenant_of: dict[str, str] = {}  # each interactive id's tenant, as published
        self.ok = True
        self.top_ups = 0
        self.chunks_without_a_message = 0

    def publish_calls(
        self,
        call_ids: Sequence[str],
        queue: str,
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
        first: bool = False,
    ) -> bool:
        self.tenant_of.update(tenant_of)
        self.batches.append((list(call_ids), queue))
        return self.ok

    def publish_deliveries(
        self,
        delivery_ids: Sequence[str],
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
    ) -> bool:
        self.tenant_of.update(tenant_of)
        self.deliveries.extend(delivery_ids)
        return self.ok

    def top_up_bulk(self) -> int:
        self.top_ups += 1
        return self.chunks_without_a_message

    @property
    def ids(self) -> list[str]:
        return [i for ids, _ in self.batches for i in ids]

    def queue_of(self, call_id: str) -> str:
        return next(q for ids, q in self.batches if call_id in ids)


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def engine(own_engine: Engine) -> Engine:
    """A database of the test's own: the sweeper sweeps every row, so its report counts
    exactly the calls the test made."""
    return own_engine


@pytest.fixture
def runtime(
    engine: Engine, catalog: Catalog, vault: Vault, published: Published
) -> Iterator[Runtime]:
    started: list[bool] = []

    def no_client() -> httpx.AsyncClient:
        started.append(True)
        raise AssertionError("the sweeper must not call upstreams")

    runtime = make_runtime(engine, catalog, vault, no_client, max_response_bytes=1000, now=NOW)
    yield replace(runtime, publisher=published)
    runtime.sender.close()
    # The sender was never started: no event loop, no HTTP client
    assert started == []


@pytest.fixture
def redis_with_epoch() -> fakeredis.FakeRedis:
    """A Redis that has not lost its data since the last sweep."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    client.set(KEY_BROKER_EPOCH, "earlier")
    return client


@pytest.fixture
def empty_redis() -> fakeredis.FakeRedis:
    """A Redis that restarted without persistence."""
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def sweep(runtime: Runtime, redis: fakeredis.FakeRedis) -> SweepReport:
    """A sweep with `redis` holding the broker's epoch."""
    return sweep_with(replace(runtime, epoch=RedisEpoch(redis)))


def make_call(
    engine: Engine,
    account: ConnectedAccount,
    *,
    status: CallStatus,
    created_at: datetime = NOW - timedelta(minutes=5),
    **fields: Any,
) -> FunctionCall:
    """A call created before the publish grace ran out, started when created if running."""
    return factories.make_call(
        engine,
        account,
        status=status,
        created_at=created_at,
        started_at=created_at if status is CallStatus.RUNNING else None,
        **fields,
    )


def running(engine: Engine, account: ConnectedAccount, method: str, **kw: Any) -> FunctionCall:
    return make_call(
        engine,
        account,
        status=CallStatus.RUNNING,
        method=method,
        published_at=NOW - timedelta(minutes=5),
        lease_expires_at=NOW - timedelta(seconds=1),
        attempt_count=1,
        **kw,
    )


def test_every_sweep_sends_messages_for_bulk_chunks_left_without_one(
    runtime: Runtime, published: Published, redis_with_epoch: fakeredis.FakeRedis
) -> None:
    # models/broker.py's top_up_bulk: a dead worker's messages, taken but not started
    published.chunks_without_a_message = 3
    report = sweep(runtime, redis_with_epoch)
    assert (published.top_ups, report.bulk_messages) == (1, 3)


# --- lost leases -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_expired_lease_of_idempotent_call_is_retried(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
    method: str,
) -> None:
    # Given a running GET whose worker died (lease expired)
    call = running(engine, account, method)
    # When the sweeper runs
    report = sweep(runtime, redis_with_epoch)
    # Then the call is retrying, due now, and published again
    stored = load(engine, call.id)
    assert stored.status is CallStatus.RETRYING
    assert stored.lease_expires_at is None
    assert stored.next_attempt_at == NOW
    assert stored.finished_at is None
    assert stored.error is None
    assert published.ids.count(call.id) == 1
    assert published.queue_of(call.id) == QUEUE_INTERACTIVE
    assert report == SweepReport(recovered=1)
    # and the lost attempt is on record
    assert [a.error for a in attempts(engine, call.id)] == ["lease_expired"]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_expired_lease_of_non_idempotent_call_fails_outcome_unknown(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
    method: str,
) -> None:
    # Given a running POST whose worker died
    call = running(engine, account, method)
    # When the sweeper runs
    report = sweep(runtime, redis_with_epoch)
    # Then it is not sent again: it ends failed with outcome_unknown
    stored = load(engine, call.id)
    assert stored.status is CallStatus.FAILED
    assert stored.error == "outcome_unknown"
    assert stored.finished_at == NOW
    assert stored.lease_expires_at is None
    assert call.id not in published.ids
    assert report == SweepReport(abandoned=1)
    assert [a.error for a in attempts(engine, call.id)] == ["lease_expired"]


def test_expired_lease_of_post_with_idempotency_key_is_retried(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
) -> None:
    call = running(engine, account, "POST", idempotency_key=f"key-{new_id('k')}")
    sweep(runtime, redis_with_epoch)
    assert load(engine, call.id).status is CallStatus.RETRYING
    assert published.ids == [call.id]


@pytest.mark.parametrize(
    ("options", "attempts_left"), [(None, True), ({"retry": {"max_attempts": 2}}, False)]
)
def test_a_call_whose_worker_stops_on_every_attempt_ends_instead_of_looping(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
    options: dict[str, object] | None,
    attempts_left: bool,
) -> None:
    # Given a GET whose worker stopped on its second attempt (a call that kills its worker,
    # say), under the operator's 4 attempts or its own 2
    call = running(engine, account, "GET", options=options)
    with engine.begin() as conn:
        conn.execute(
            FunctionCall.__table__.update()  # type: ignore[attr-defined]
            .where(FunctionCall.__table__.c.id == call.id)  # type: ignore[attr-defined]
            .values(attempt_count=2)
        )
    # When the sweeper runs
    sweep(runtime, redis_with_epoch)
    # Then it runs again only while it has attempts left, else it ends saying why
    stored = load(engine, call.id)
    if attempts_left:
        assert stored.status is CallStatus.RETRYING
    else:
        assert (stored.status, stored.error) == (CallStatus.FAILED, "lease_expired")
        assert call.id not in published.ids
        assert stored.error_message is not None
        assert "stopped on each of its 2 attempts" in stored.error_message


def test_live_lease_is_left_alone(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
) -> None:
    call = make_call(
        engine,
        account,
        status=CallStatus.RUNNING,
        published_at=NOW - timedelta(minutes=1),
        lease_expires_at=NOW + timedelta(seconds=30),
        attempt_count=1,
    )
    sweep(runtime, redis_with_epoch)
    stored = load(engine, call.id)
    assert stored.status is CallStatus.RUNNING
    assert stored.lease_expires_at == NOW + timedelta(seconds=30)
    assert call.id not in published.ids
    assert attempts(engine, call.id) == []


def test_recovered_call_is_published_once_across_sweeps(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
) -> None:
    call = running(engine, account, "GET")
    sweep(runtime, redis_with_epoch)
    sweep(runtime, redis_with_epoch)
    assert published.ids.count(call.id) == 1


# --- publish failures and lost broker data ------------------------------------------------


def test_unpublished_queued_call_is_republished(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
) -> None:
    # Given a queued call whose publish failed, older than the grace period
    call = make_call(engine, account, status=CallStatus.QUEUED, published_at=None)
    # When the sweeper runs
    report = sweep(runtime, redis_with_epoch)
    # Then it is published and marked so
    assert published.ids.count(call.id) == 1
    assert published.queue_of(call.id) == QUEUE_INTERACTIVE
    assert published.tenant_of[call.id] == account.tenant_id  # on its tenant's list
    assert load(engine, call.id).published_at == NOW
    assert report == SweepReport(republished=1)
    # and the next sweep leaves it alone
    sweep(runtime, redis_with_epoch)
    assert published.ids.count(call.id) == 1


def test_batch_call_is_republished_on_the_bulk_lane(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
) -> None:
    call = make_call(engine, account, status=CallStatus.QUEUED, batch_id=new_id("bt"))
    sweep(runtime, redis_with_epoch)
    assert published.queue_of(call.id) == QUEUE_BULK


@pytest.mark.parametrize(
    ("created_at", "published_at"),
    [
        # new and unpublished: it waits for the grace period
        (NOW - PUBLISH_GRACE / 2, None),
        # published, and Redis still holds its message
        (NOW - timedelta(minutes=5), NOW - timedelta(minutes=5)),
    ],
    ids=[
        "new_unpublished_call_waits_for_the_grace_period",
        "published_queued_call_is_not_republished_while_redis_is_intact",
    ],
)
def test_queued_call_is_not_republished(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
    created_at: datetime,
    published_at: datetime | None,
) -> None:
    # Given a queued call that is new, or that was published while Redis kept its data
    call = make_call(
        engine, account, status=CallStatus.QUEUED, created_at=created_at, published_at=published_at
    )
    # When the sweeper runs
    sweep(runtime, redis_with_epoch)
    # Then it is not published (again)
    assert call.id not in published.ids
    assert load(engine, call.id).published_at == published_at


def test_failed_publish_leaves_call_for_next_sweep(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
) -> None:
    call = make_call(engine, account, status=CallStatus.QUEUED)
    published.ok = False
    sweep(runtime, redis_with_epoch)
    assert published.ids == [call.id]
    assert load(engine, call.id).published_at is None
    published.ok = True
    sweep(runtime, redis_with_epoch)
    assert published.ids.count(call.id) == 2
    assert load(engine, call.id).published_at == NOW


def test_empty_redis_republishes_every_old_queued_call(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    empty_redis: fakeredis.FakeRedis,
    published: Published,
) -> None:
    # Given queued calls that were published, then Redis lost its data
    old = [
        make_call(
            engine, account, status=CallStatus.QUEUED, published_at=NOW - timedelta(minutes=4)
        )
        for _ in range(3)
    ]
    # When the sweeper runs
    sweep(runtime, empty_redis)
    # Then every one is published again, and the epoch marks Redis as known
    for call in old:
        assert published.ids.count(call.id) == 1
    assert empty_redis.get(KEY_BROKER_EPOCH) is not None
    # and a second sweep does not publish them again
    sweep(runtime, empty_redis)
    for call in old:
        assert published.ids.count(call.id) == 1


def test_empty_redis_leaves_final_calls_alone(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    empty_redis: fakeredis.FakeRedis,
    published: Published,
) -> None:
    done = [
        make_call(engine, account, status=status, published_at=NOW - timedelta(minutes=4))
        for status in (CallStatus.COMPLETED, CallStatus.FAILED, CallStatus.CANCELLED)
    ]
    sweep(runtime, empty_redis)
    assert not {c.id for c in done} & set(published.ids)


# --- retrying calls ---------------------------------------------------------------------------


def test_due_retrying_call_is_published(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
) -> None:
    call = make_call(
        engine,
        account,
        status=CallStatus.RETRYING,
        published_at=NOW - timedelta(minutes=3),
        next_attempt_at=NOW - timedelta(seconds=5),
        attempt_count=1,
    )
    later = make_call(
        engine,
        account,
        status=CallStatus.RETRYING,
        published_at=NOW - timedelta(minutes=3),
        next_attempt_at=NOW + timedelta(minutes=5),
        attempt_count=1,
    )
    report = sweep(runtime, redis_with_epoch)
    assert published.ids.count(call.id) == 1
    assert later.id not in published.ids
    assert report == SweepReport(due=1)
    assert load(engine, call.id).published_at == NOW


def test_empty_redis_republishes_retrying_call_already_published(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    empty_redis: fakeredis.FakeRedis,
    published: Published,
) -> None:
    # Given a retrying call that was published when it became due (as lease recovery does),
    # and then Redis lost its data, message included
    due = NOW - timedelta(minutes=2)
    call = make_call(
        engine,
        account,
        status=CallStatus.RETRYING,
        published_at=due,
        next_attempt_at=due,
        attempt_count=1,
    )
    # When the sweeper runs
    sweep(runtime, empty_redis)
    # Then the call is published again: losing Redis must lose no call
    assert published.ids == [call.id]


def test_retry_whose_countdown_message_was_lost_is_published_once_stale(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
) -> None:
    # Given a retry published with a countdown (published_at = its due time) whose message
    # died with its worker, due for longer than the republish period
    due = NOW - timedelta(minutes=10)
    lost = make_call(
        engine,
        account,
        status=CallStatus.RETRYING,
        published_at=due,
        next_attempt_at=due,
        attempt_count=1,
    )
    # and one whose countdown is only just due (its message may still arrive)
    fresh_due = NOW - timedelta(seconds=1)
    fresh = make_call(
        engine,
        account,
        status=CallStatus.RETRYING,
        published_at=fresh_due,
        next_attempt_at=fresh_due,
        attempt_count=1,
    )
    # When the sweeper runs, with Redis intact
    sweep(runtime, redis_with_epoch)
    # Then only the stale one is published again
    assert published.ids == [lost.id]
    assert fresh.id not in published.ids


def test_redis_loss_marks_retries_not_yet_due_unpublished(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    empty_redis: fakeredis.FakeRedis,
    published: Published,
) -> None:
    # Given a retry due in a minute, whose countdown message was in the Redis that was lost
    later = NOW + timedelta(minutes=1)
    call = make_call(
        engine,
        account,
        status=CallStatus.RETRYING,
        published_at=later,
        next_attempt_at=later,
        attempt_count=1,
    )
    # When the sweeper notices the loss
    sweep(runtime, empty_redis)
    # Then it is not published early (the claim would refuse it), but left for when it is due
    assert call.id not in published.ids
    assert load(engine, call.id).published_at is None


def test_a_call_handed_back_for_its_rate_limit_slot_is_published_when_due(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    redis_with_epoch: fakeredis.FakeRedis,
    published: Published,
) -> None:
    # Given two queued calls handed back to wait for their slots (one due, one in 5 min),
    # last published long ago, beyond the republish-after delay
    due = make_call(
        engine,
        account,
        status=CallStatus.QUEUED,
        published_at=NOW - timedelta(minutes=10),
        next_attempt_at=NOW - timedelta(seconds=1),
    )
    later = make_call(
        engine,
        account,
        status=CallStatus.QUEUED,
        published_at=NOW - timedelta(minutes=10),
        next_attempt_at=NOW + timedelta(minutes=5),
    )
    # When the sweeper runs
    sweep(runtime, redis_with_epoch)
    # Then the due one is published once, and the other is left to wait (no early message)
    assert published.ids.count(due.id) == 1
    assert later.id not in published.ids


def test_redis_loss_marks_handed_back_calls_unpublished(
    engine: Engine,
    account: ConnectedAccount,
    runtime: Runtime,
    empty_redis: fakeredis.FakeRedis,
    published: Published,
) -> None:
    # Given a queued call waiting for a slot 30 s away on a countdown message, then Redis
    # restarted empty
    waiting = make_call(
        engine,
        account,
        status=CallStatus.QUEUED,
        created_at=NOW - timedelta(minutes=1),
        published_at=NOW + timedelta(seconds=30),
        next_attempt_at=NOW + timedelta(seconds=30),
    )
    # When the sweeper runs
    sweep(runtime, empty_redis)
    # Then it is not published early, but marked so that it is published when due
    assert waiting.id not in published.ids
    assert load(engine, waiting.id).published_at is None
