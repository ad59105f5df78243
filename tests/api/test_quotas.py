"""Per-tenant bounds: the admission logic with injected clocks against a real Redis, then
one API test per bound."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text, update
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import col

import api.quotas
from api.dev.embedded_redis import EmbeddedRedis
from api.open_calls import open_calls_counter, open_calls_query
from api.quotas import Quotas
from api.redis_rates import Rate, RedisRate, quotas_client
from models.accounts.tenants import create_tenant
from models.calls.states import CallStatus
from models.catalog.spec import RateLimitSpec
from models.db.engine import session_scope
from models.db.tables import FunctionCall
from models.errors import ApiError
from tests.api.conftest import Caller
from tests.api.test_errors import assert_error_shape

CALL = {"method": "GET", "url": "conversations.list"}


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000


@pytest.fixture
def rclient(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server.url)
    yield c
    c.close()


def key() -> str:
    return f"passthru:quota:test:{secrets.token_hex(4)}"


def rate(limit: int, period_s: float, burst: int | None = None) -> Rate:
    return Rate.of(RateLimitSpec(scope="tenant", limit=limit, period_s=period_s, burst=burst))


def quotas(client: redis.Redis, clock: Clock, **bounds: Any) -> Quotas:
    settings: dict[str, Any] = {
        "count_open_calls": lambda _tenant, _cap: 0,
        "submit_rate": None,
        "max_open_calls": 1000,
        "max_waits": 10,
        "redeliveries_per_min": 60,
    }
    settings.update(bounds)
    return Quotas(client=client, now_ms=clock.now_ms, monotonic=clock.monotonic, **settings)


def refusal(action: Callable[[], Any]) -> ApiError:
    with pytest.raises(ApiError) as err:
        action()
    assert err.value.status_code == 429
    assert err.value.error == "too_many_requests"
    assert int(err.value.headers["Retry-After"]) >= 1
    return err.value


# --- the GCRA in Redis ------------------------------------------------------------------------


def test_rate_burst_defaults_to_the_limit() -> None:
    assert rate(1000, 1) == Rate(1, 1000, "1000 per 1 s (burst 1000)")
    assert rate(1000, 1, 10_000).burst == 10_000
    assert rate(3, 60).interval_ms == 20_000


def test_a_burst_is_admitted_then_one_cell_per_interval(rclient: redis.Redis) -> None:
    # Given 10 per second with a burst of 3, and a clock that stands still
    clock, k, r = Clock(), key(), rate(10, 1, 3)
    rates = RedisRate(rclient, clock.now_ms)
    # When 4 ask at once / Then 3 go and the 4th must wait one interval (100 ms)
    assert [rates.take(k, r) for _ in range(4)] == [0, 0, 0, 100]
    # And 100 ms later one more goes, but not two
    clock.ms += 100
    assert rates.take(k, r) == 0
    assert rates.take(k, r) == 100


def test_n_cells_at_once_and_nothing_taken_when_refused(rclient: redis.Redis) -> None:
    clock, k, r = Clock(), key(), rate(10, 1, 5)
    rates = RedisRate(rclient, clock.now_ms)
    assert rates.take(k, r, 4) == 0
    # 2 more do not fit (1 left): refused, and the 1 left is still there
    assert rates.take(k, r, 2) == 100
    assert rates.take(k, r, 1) == 0
    assert rates.take(k, r, 1) == 100


def test_redis_time_is_the_clock_when_none_is_given(rclient: redis.Redis) -> None:
    k, r = key(), rate(1, 60, 2)
    rates = RedisRate(rclient)
    assert rates.take(k, r) == 0
    assert rates.take(k, r) == 0
    assert rates.take(k, r) > 50_000  # the next cell is about a minute away


def test_a_key_expires_once_it_holds_nothing(rclient: redis.Redis) -> None:
    clock, k = Clock(), key()
    RedisRate(rclient, clock.now_ms).take(k, rate(10, 1, 3))
    ttl_ms = rclient.pttl(k)
    assert 0 < ttl_ms <= 100


# --- the bounds -------------------------------------------------------------------------------


def test_submissions_beyond_the_rate_are_refused_with_retry_after(rclient: redis.Redis) -> None:
    # Given 2 calls per minute, burst 2
    clock = Clock()
    q = quotas(rclient, clock, submit_rate=RateLimitSpec(scope="tenant", limit=2, period_s=60))
    tenant = f"tn_{secrets.token_hex(4)}"
    q.admit_calls(tenant, 2)
    # When a third is submitted
    err = refusal(lambda: q.admit_calls(tenant, 1))
    # Then it is refused: the field says what, the message the setting, Retry-After when
    assert err.details[0].field == "calls"
    assert "PASSTHRU_TENANT_SUBMIT_RATE" in err.details[0].message
    assert err.headers["Retry-After"] == "30"
    # And another tenant is not held back
    q.admit_calls(f"tn_{secrets.token_hex(4)}", 1)


def test_more_calls_at_once_than_the_burst_is_refused(rclient: redis.Redis) -> None:
    spec = RateLimitSpec(scope="tenant", limit=10, period_s=1, burst=5)
    q = quotas(rclient, Clock(), submit_rate=spec)
    err = refusal(lambda: q.admit_calls(f"tn_{secrets.token_hex(4)}", 6))
    assert "split" in err.details[0].message


def test_open_calls_are_counted_once_a_second_plus_what_was_admitted(
    rclient: redis.Redis,
) -> None:
    # Given a tenant with 8 calls not finished, and a cap of 10
    counted: list[str] = []

    def count(tenant: str, cap: int) -> int:
        counted.append(tenant)
        return 8

    clock = Clock()
    q = quotas(rclient, clock, count_open_calls=count, max_open_calls=10)
    # When 2 more are admitted / Then one count was enough, and the 11th is refused
    q.admit_calls("tn_a", 1)
    q.admit_calls("tn_a", 1)
    err = refusal(lambda: q.admit_calls("tn_a", 1))
    assert counted == ["tn_a"]
    assert err.details[0].field == "calls"
    assert "PASSTHRU_TENANT_MAX_OPEN_CALLS" in err.details[0].message
    # And a second later, admitting uses the old count; preparing asks the database again
    clock.ms += 1000
    refusal(lambda: q.admit_calls("tn_a", 1))
    assert counted == ["tn_a"]
    q.prepare("tn_a")
    refusal(lambda: q.admit_calls("tn_a", 3))
    assert counted == ["tn_a", "tn_a"]


def test_threads_counting_one_tenant_at_once_send_one_query(rclient: redis.Redis) -> None:
    # Given a database slow to count
    counted: list[str] = []
    started, release = threading.Event(), threading.Event()

    def count(tenant: str, cap: int) -> int:
        counted.append(tenant)
        if tenant == "tn_a":
            started.set()
            release.wait(5)
        return 1

    q = quotas(rclient, Clock(), count_open_calls=count)
    # When 8 threads prepare the same tenant while the first count runs, and one another
    threads = [threading.Thread(target=q.prepare, args=("tn_a",)) for _ in range(8)]
    threads[0].start()
    assert started.wait(5)
    for t in threads[1:]:
        t.start()
    other = threading.Thread(target=q.prepare, args=("tn_b",))
    other.start()
    other.join(5)
    assert not other.is_alive()
    release.set()
    for t in threads:
        t.join(5)
    # Then the tenant was counted once, and the other tenant never waited for it
    assert sorted(counted) == ["tn_a", "tn_b"]
    q.admit_calls("tn_a", 1)
    assert sorted(counted) == ["tn_a", "tn_b"]


def test_long_polls_are_bounded_per_tenant_and_released(rclient: redis.Redis) -> None:
    q = quotas(rclient, Clock(), max_waits=2)
    with q.waiting("tn_a", "wait"), q.waiting("tn_a", "wait"):
        err = refusal(lambda: q.waiting("tn_a", "Prefer").__enter__())
        assert err.details[0].field == "Prefer"
        assert "PASSTHRU_TENANT_MAX_WAITS" in err.details[0].message
        with q.waiting("tn_b", "wait"):  # another tenant is not held back
            pass
    with q.waiting("tn_a", "wait"), q.waiting("tn_a", "wait"):
        pass  # both released


def test_a_wait_not_asked_for_is_skipped_when_no_long_poll_is_free(rclient: redis.Redis) -> None:
    # Given a tenant allowed 2 long polls
    q = quotas(rclient, Clock(), max_waits=2)
    with q.waiting_if_free("tn_a") as first, q.waiting("tn_a", "wait"):
        # When a third wait is not asked for (the operator's default wait)
        with q.waiting_if_free("tn_a") as third:
            # Then it holds nothing, and is not refused; another tenant is not held back
            assert (first, third) == (True, False)
            with q.waiting_if_free("tn_b") as other:
                assert other
        # And leaving it released nothing: the two long polls are still held
        refusal(lambda: q.waiting("tn_a", "Prefer").__enter__())
    with q.waiting("tn_a", "wait"), q.waiting_if_free("tn_a") as held:
        assert held  # both released


def test_redeliveries_per_minute(rclient: redis.Redis) -> None:
    clock = Clock()
    q = quotas(rclient, clock, redeliveries_per_min=3)
    for _ in range(3):
        q.admit_redelivery("tn_r")
    err = refusal(lambda: q.admit_redelivery("tn_r"))
    assert err.details[0].field == "redeliveries"
    assert "PASSTHRU_TENANT_REDELIVERIES_PER_MIN" in err.details[0].message
    assert err.headers["Retry-After"] == "20"
    clock.ms += 20_000
    q.admit_redelivery("tn_r")


def test_without_redis_the_rates_admit_and_say_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a Redis that does not answer
    gone = quotas_client("redis://127.0.0.1:1/0")
    clock = Clock()
    spec = RateLimitSpec(scope="tenant", limit=1, period_s=60)
    q = quotas(gone, clock, submit_rate=spec, redeliveries_per_min=1)
    # When a tenant submits more than its rate, and redelivers twice
    for _ in range(3):
        q.admit_calls("tn_a", 1)
        clock.ms += 2000  # past the back-off: Redis is asked again each time
    q.admit_redelivery("tn_a")
    q.admit_redelivery("tn_a")
    # Then everything was admitted, and the log says why once
    assert caplog.text.count("Redis did not answer") == 1


def test_open_calls_are_counted_in_the_database(engine: Engine, caller: Caller) -> None:
    # Given 3 calls of a tenant, one of them finished
    caller.connect()
    ids = [
        caller.client.post(
            "/slack-passthrough-request", json=CALL, headers=caller.headers()
        ).json()["id"]
        for _ in range(3)
    ]
    finish(engine, ids[0])
    count = open_calls_counter(engine)
    # Then 2 are open, and counting stops past the cap
    assert count(caller.tenant.id, 100) == 2
    assert count(caller.tenant.id, 0) == 1
    assert count("tn_nobody", 100) == 0


def finish(engine: Engine, call_id: str) -> None:
    with session_scope(engine) as session:
        session.exec(
            update(FunctionCall)
            .where(col(FunctionCall.id) == call_id)
            .values(status=CallStatus.COMPLETED)
        )


# --- through the API: one test per bound ------------------------------------------------------


@pytest.fixture
def bounded(
    make_app: Callable[..., FastAPI], redis_server: EmbeddedRedis
) -> Callable[..., TestClient]:
    def make(**settings: Any) -> TestClient:
        return TestClient(make_app(redis_url=redis_server.url, **settings))

    return make


def new_caller(client: TestClient, engine: Engine) -> Caller:
    tenant, api_key = create_tenant(engine, f"bounded-{secrets.token_hex(3)}")
    caller = Caller(client, tenant, api_key)
    caller.connect()
    return caller


def calls_of(caller: Caller) -> list[str]:
    page = caller.client.get("/function-calls", headers=caller.headers()).json()
    return [c["id"] for c in page["items"]]


def assert_429(response: Any, field: str, setting: str) -> None:
    assert response.status_code == 429, response.text
    assert_error_shape(response.json(), "too_many_requests")
    assert int(response.headers["Retry-After"]) >= 1
    (detail,) = response.json()["error_details"]
    assert detail["field"] == field
    assert setting in detail["message"]


def test_the_submission_rate_holds_for_calls_and_batches(
    bounded: Callable[..., TestClient], engine: Engine
) -> None:
    # Given a tenant allowed 3 calls a minute
    caller = new_caller(bounded(tenant_submit_rate="3/60/3"), engine)
    # When it submits 2 single calls, then a batch of 2 valid calls and 1 invalid
    for _ in range(2):
        ok = caller.client.post("/slack-passthrough-request", json=CALL, headers=caller.headers())
        assert ok.status_code == 202
    batch = {
        "calls": [
            {"function": "slack-passthrough-request", "params": CALL},
            {"function": "slack-passthrough-request", "params": CALL},
            {"function": "slack-passthrough-request", "params": {"method": "GET"}},
        ]
    }
    refused = caller.client.post("/function-calls/batch", json=batch, headers=caller.headers())
    # Then the batch is refused as a whole (its 2 calls would pass 3): nothing written
    assert_429(refused, "calls", "PASSTHRU_TENANT_SUBMIT_RATE")
    assert len(calls_of(caller)) == 2
    # And a batch of 1 valid call (and 1 invalid, not counted) still fits
    batch["calls"] = batch["calls"][1:]
    fits = caller.client.post("/function-calls/batch", json=batch, headers=caller.headers())
    assert fits.status_code == 202, fits.text
    assert len(fits.json()["accepted"]) == 1
    # And the next single call is refused, unwritten
    again = caller.client.post("/slack-passthrough-request", json=CALL, headers=caller.headers())
    assert_429(again, "calls", "PASSTHRU_TENANT_SUBMIT_RATE")
    assert len(calls_of(caller)) == 3


def test_calls_not_finished_are_bounded(
    bounded: Callable[..., TestClient], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a tenant allowed 2 calls not finished (counted afresh at every call here)
    monkeypatch.setattr(api.quotas, "OPEN_CALLS_TTL_S", 0.0)
    caller = new_caller(bounded(tenant_max_open_calls=2), engine)
    first = caller.client.post("/slack-passthrough-request", json=CALL, headers=caller.headers())
    caller.client.post("/slack-passthrough-request", json=CALL, headers=caller.headers())
    # When a third is submitted / Then it is refused, unwritten
    third = caller.client.post("/slack-passthrough-request", json=CALL, headers=caller.headers())
    assert_429(third, "calls", "PASSTHRU_TENANT_MAX_OPEN_CALLS")
    assert len(calls_of(caller)) == 2
    # And once one finishes, there is room again
    finish(engine, first.json()["id"])
    fourth = caller.client.post("/slack-passthrough-request", json=CALL, headers=caller.headers())
    assert fourth.status_code == 202


def test_long_polls_are_bounded(bounded: Callable[..., TestClient], engine: Engine) -> None:
    # Given a tenant allowed 1 open long poll, which it holds
    client = bounded(tenant_max_waits=1)
    caller = new_caller(client, engine)
    call_id = caller.client.post(
        "/slack-passthrough-request", json=CALL, headers=caller.headers()
    ).json()["id"]
    quotas: Quotas = client.app.state.quotas  # type: ignore[attr-defined]
    with quotas.waiting(caller.tenant.id, "wait"):
        # When it asks to wait again, by ?wait= or by Prefer
        polled = caller.client.get(f"/function-calls/{call_id}?wait=5", headers=caller.headers())
        prefer = caller.client.post(
            "/slack-passthrough-request",
            json=CALL,
            headers=caller.headers(Prefer="wait=5"),
        )
        # Then both are refused, naming what asked to wait; the refused call is not written
        assert_429(polled, "wait", "PASSTHRU_TENANT_MAX_WAITS")
        assert_429(prefer, "Prefer", "PASSTHRU_TENANT_MAX_WAITS")
        assert len(calls_of(caller)) == 1
        # And reading without waiting still works
        assert caller.client.get(f"/function-calls/{call_id}", headers=caller.headers()).is_success
    # And once the slot is free, waiting works again
    after = caller.client.get(f"/function-calls/{call_id}?wait=0.1", headers=caller.headers())
    assert after.status_code == 200


def test_redeliveries_are_bounded(bounded: Callable[..., TestClient], engine: Engine) -> None:
    # Given a finished call with a callback, and 1 redelivery a minute
    caller = new_caller(bounded(tenant_redeliveries_per_min=1), engine)
    call_id = caller.client.post(
        "/slack-passthrough-request",
        json={**CALL, "callback_url": "https://hooks.example.com/in"},
        headers=caller.headers(),
    ).json()["id"]
    finish(engine, call_id)
    path = f"/function-calls/{call_id}/redeliver"
    assert caller.client.post(path, headers=caller.headers()).status_code == 202
    # When redelivered again within the minute / Then it is refused
    assert_429(
        caller.client.post(path, headers=caller.headers()),
        "redeliveries",
        "PASSTHRU_TENANT_REDELIVERIES_PER_MIN",
    )


def test_the_open_calls_count_reads_the_partial_index(engine: Engine) -> None:
    # Given the query that counts a tenant's unfinished calls, its values written in
    query = open_calls_query("tn_x", 100, engine.dialect.name).compile(
        engine, compile_kwargs={"literal_binds": True}
    )
    # When the database plans it (Postgres told to avoid a scan of a small table)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = " ".join(str(row) for row in conn.execute(text(f"EXPLAIN {query}")).all())
        if engine.dialect.name == "sqlite":
            plan = " ".join(
                str(row) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {query}")).all()
            )
    # Then it reads the partial index of unfinished calls, not the table
    assert "ix_call_tenant_open" in plan, plan


def test_a_count_that_fails_is_the_answer_of_every_thread_that_waited_for_it(
    rclient: redis.Redis,
) -> None:
    # Given a database that fails slowly (a full pool: each checkout waits, then fails)
    counted: list[str] = []

    def count(tenant: str, cap: int) -> int:
        counted.append(tenant)
        time.sleep(0.3)
        raise PoolTimeout("QueuePool limit reached")

    q = quotas(rclient, Clock(), count_open_calls=count)
    answers: list[int] = []

    def prepare() -> None:
        try:
            q.prepare("tn_a")
        except ApiError as err:
            answers.append(err.status_code)

    # When 6 submissions of the tenant prepare at once
    threads = [threading.Thread(target=prepare) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # Then the database was asked once, and each got the 503 to retry
    assert counted == ["tn_a"]
    assert answers == [503] * 6


def test_a_submission_counts_its_open_calls_holding_no_connection(
    bounded: Callable[..., TestClient], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the open-calls count, made at every submission, watched: how many connections
    # are out when it runs
    monkeypatch.setattr(api.quotas, "OPEN_CALLS_TTL_S", 0.0)
    client = bounded()
    app: FastAPI = client.app  # type: ignore[assignment]
    quotas: Quotas = app.state.quotas
    counting = quotas._count_open_calls
    out_while_counting: list[int] = []

    def count(tenant_id: str, cap: int) -> int:
        out_while_counting.append(app.state.engine.pool.checkedout())
        return counting(tenant_id, cap)

    quotas._count_open_calls = count
    caller = new_caller(client, engine)
    # When a call and a batch are submitted
    one = client.post("/slack-passthrough-request", json=CALL, headers=caller.headers())
    batch = client.post(
        "/function-calls/batch",
        json={"calls": [{"function": "slack-passthrough-request", "params": CALL}]},
        headers=caller.headers(),
    )
    # Then both were admitted, and each count ran while the request held no connection
    assert one.status_code == 202
    assert batch.status_code == 202
    assert out_while_counting == [0, 0]
