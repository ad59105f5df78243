"""Batches taken in by a process of their own (PASSTHRU_BATCH_INTAKE_PROCESS): written and
published as the API's threads would, refusals answered and counted by the API, a process
that died idle replaced before the next batch, and one that dies under a batch answered by
what it left and replaced."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import col, select

from api.app import create_app
from api.batch_intake import BatchProcess
from api.dev.embedded_redis import EmbeddedRedis
from api.prometheus import CALLS_ACCEPTED, CALLS_REJECTED, REQUESTS_REFUSED
from models.db.engine import read_session
from models.db.ids import new_id
from models.db.tables import FunctionCall, Tenant
from models.keys import BULK_DUE_OF_PREFIX, BULK_DUE_TENANTS, BULK_QUEUES
from models.settings import Settings
from tests.api.conftest import PublishedIds
from tests.console.conftest import TestClient

GOOD = {"function": "slack-passthrough-request", "params": {"method": "GET", "url": "/users"}}
BAD = {"function": "slack-passthrough-request", "params": {"method": "GET"}}


@pytest.fixture
def process_app(
    own_redis: EmbeddedRedis, settings_of: Callable[..., Settings]
) -> Callable[..., TestClient]:
    """A running API (its lifespan entered) that takes batches in through its own process."""
    apps: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        settings = settings_of(
            redis_url=own_redis.url, metrics_port=0, batch_intake_process=True, **overrides
        )
        client = TestClient(create_app(settings))  # its own broker publisher
        client.__enter__()
        apps.append(client)
        return client

    yield make  # type: ignore[misc]
    for client in apps:
        client.__exit__(None, None, None)


def connect(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post(
        "/connected-accounts",
        json={"app": "slack", "credentials": {"access_token": "xoxb-test"}},
        headers=headers,
    )
    assert response.status_code == 201, response.text


def headers_of(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-User-ID": "user-1"}


def batch(client: TestClient, key: str, calls: list[dict[str, Any]]) -> Any:
    return client.post("/function-calls/batch", json={"calls": calls}, headers=headers_of(key))


def intake_process(app: FastAPI) -> BatchProcess:
    intake = app.state.batch_intake
    assert isinstance(intake, BatchProcess)
    return intake


def intake_pids(app: FastAPI) -> list[int]:
    pool = intake_process(app)._pool
    assert pool is not None
    return [p.pid for p in pool._processes.values() if p.pid is not None]


def published_ids(redis_url: str) -> set[str]:
    """The call ids published on the bulk lane: in its tenants' chunks, and in Celery
    messages on its shards (a countdown's)."""
    client = redis.Redis.from_url(redis_url)
    try:
        ids: set[str] = set()
        for raw in (raw for shard in BULK_QUEUES for raw in client.lrange(shard, 0, -1)):
            body = json.loads(base64.b64decode(json.loads(raw)["body"]))
            ids.update(_strings(body))
        for tenant in client.lrange(BULK_DUE_TENANTS, 0, -1):
            for chunk in client.lrange(f"{BULK_DUE_OF_PREFIX}{tenant.decode()}", 0, -1):
                ids.update(chunk.decode().split(","))
        return ids
    finally:
        client.close()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def test_a_batch_is_taken_in_by_a_process_of_its_own(
    process_app: Callable[..., TestClient],
    tenant_and_key: tuple[Tenant, str],
    engine: Engine,
    own_redis: EmbeddedRedis,
) -> None:
    tenant, key = tenant_and_key
    client = process_app()
    connect(client, headers_of(key))
    accepted_before = CALLS_ACCEPTED.labels("bulk")._value.get()
    rejected_before = CALLS_REJECTED.labels("invalid_params")._value.get()

    # When a batch of two good calls and a bad one is submitted
    response = batch(client, key, [GOOD, BAD, GOOD])

    # Then it was taken in by another process than the API's
    assert response.status_code == 202, response.text
    pids = intake_pids(client.app)  # type: ignore[arg-type]
    assert pids
    assert os.getpid() not in pids
    # and answered as the API's threads answer: each call accepted or rejected on its own
    body = response.json()
    assert [a["index"] for a in body["accepted"]] == [0, 2]
    assert [(r["index"], r["error"]) for r in body["rejected"]] == [(1, "invalid_params")]
    ids = {a["id"] for a in body["accepted"]}
    with read_session(engine) as session:
        rows = session.exec(
            select(FunctionCall).where(col(FunctionCall.batch_id) == body["batch_id"])
        ).all()
    assert {r.id for r in rows} == ids
    assert {r.tenant_id for r in rows} == {tenant.id}
    assert {str(r.status) for r in rows} == {"queued"}
    # published on the bulk lane
    assert ids <= published_ids(own_redis.url)
    # and counted by the API process
    assert CALLS_ACCEPTED.labels("bulk")._value.get() == accepted_before + 2
    assert CALLS_REJECTED.labels("invalid_params")._value.get() == rejected_before + 1


def test_an_item_nested_too_deep_to_hand_over_is_one_rejected_item(
    process_app: Callable[..., TestClient], tenant_and_key: tuple[Tenant, str]
) -> None:
    # Given a batch holding a call whose body nests 600 arrays, and a bare array as deep
    # (the API's parser takes up to 1,024 levels; pickling, which hands a batch to the
    # process, gives up near 500)
    _, key = tenant_and_key
    client = process_app()
    connect(client, headers_of(key))
    deep = b"[" * 600 + b"]" * 600
    good = json.dumps(GOOD).encode()
    too_deep = b'{"function": "slack-passthrough-request", "params": {"method": "POST", '
    too_deep += b'"url": "/x", "body": ' + deep + b"}}"
    # When submitted
    response = client.post(
        "/function-calls/batch",
        content=b'{"calls": [' + b", ".join([good, too_deep, deep, good]) + b"]}",
        headers={**headers_of(key), "Content-Type": "application/json"},
    )
    # Then each item is answered on its own, as the API's threads answer it: the good ones
    # taken, the deep ones rejected for what they are
    assert response.status_code == 202, response.text
    body = response.json()
    assert [a["index"] for a in body["accepted"]] == [0, 3]
    rejected = {r["index"]: r["error_details"][0] for r in body["rejected"]}
    assert sorted(rejected) == [1, 2]
    assert "nested deeper than 64 levels" in rejected[1]["message"]
    assert rejected[1]["field"].startswith("params.body.0.0")
    assert rejected[2] == {
        "field": "calls",
        "message": "each call must be an object in the POST /function-calls form",
    }


def test_a_bound_the_intake_process_refuses_by_is_answered_and_counted_by_the_api(
    process_app: Callable[..., TestClient], tenant_and_key: tuple[Tenant, str]
) -> None:
    _, key = tenant_and_key
    client = process_app(tenant_max_open_calls=2)
    connect(client, headers_of(key))
    refused_before = REQUESTS_REFUSED.labels("open_calls")._value.get()

    # When a batch would take the tenant past its open calls
    response = batch(client, key, [GOOD, GOOD, GOOD])

    # Then the refusal made in the intake process is the API's answer, Retry-After and all
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "too_many_requests"
    assert "PASSTHRU_TENANT_MAX_OPEN_CALLS" in response.json()["error_details"][0]["message"]
    assert int(response.headers["Retry-After"]) >= 1
    # and the API process counted it under its bound
    assert REQUESTS_REFUSED.labels("open_calls")._value.get() == refused_before + 1


def test_an_intake_process_that_died_idle_is_replaced_for_the_next_batch(
    process_app: Callable[..., TestClient], tenant_and_key: tuple[Tenant, str]
) -> None:
    _, key = tenant_and_key
    client, pid = with_intake_running(process_app(), key)

    # When the intake process is killed between two batches
    os.kill(pid, signal.SIGKILL)
    gone(pid)

    # Then the next batch is taken in by a new process, nothing of it having reached the dead one
    response = batch(client, key, [GOOD])
    assert response.status_code == 202, response.text
    [new_pid] = intake_pids(client.app)  # type: ignore[arg-type]
    assert new_pid != pid


def test_an_intake_process_that_dies_under_a_batch_is_a_503_and_replaced(
    process_app: Callable[..., TestClient], tenant_and_key: tuple[Tenant, str], engine: Engine
) -> None:
    _, key = tenant_and_key
    client, pid = with_intake_running(process_app(), key)
    pool = intake_process(client.app)._pool  # type: ignore[arg-type]
    assert pool is not None

    # When the intake process is killed while it has a batch it cannot write yet
    with writes_held(engine), ThreadPoolExecutor(1) as sending:
        answer = sending.submit(batch, client, key, [GOOD, GOOD])
        deadline = time.monotonic() + 30
        while not pool._pending_work_items:
            assert time.monotonic() < deadline, "the batch never reached the intake process"
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        response = answer.result(timeout=60)

    # Then the batch, never written, is answered 503, to be sent again
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable"
    assert "send the batch again" in response.json()["error_details"][0]["message"]
    assert response.headers["Retry-After"] == "1"
    # and the one sent again is taken in by a new process
    response = batch(client, key, [GOOD, GOOD])
    assert response.status_code == 202, response.text
    assert intake_pids(client.app) != [pid]  # type: ignore[arg-type]


def with_intake_running(client: TestClient, key: str) -> tuple[TestClient, int]:
    """The client, once its intake process has taken a batch in, and that process's pid."""
    connect(client, headers_of(key))
    assert batch(client, key, [GOOD]).status_code == 202
    [pid] = intake_pids(client.app)  # type: ignore[arg-type]
    return client, pid


@contextlib.contextmanager
def writes_held(engine: Engine) -> Iterator[None]:
    """No call can be written while the block runs: a transaction of the test's holds the
    database's write lock (SQLite) or the calls table's (Postgres)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        else:
            cursor.execute("LOCK TABLE function_call IN EXCLUSIVE MODE")
        yield
    finally:
        raw.rollback()
        raw.close()


def gone(pid: int) -> None:
    """Wait until the process `pid` has ended and been reaped."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def test_ctrl_c_stops_the_api_and_its_intake_process_without_a_traceback(
    database_url: str, encryption_key: str, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    # Given an API under uvicorn, in a process group of its own as in a terminal
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": own_redis.url,
        "PASSTHRU_ENCRYPTION_KEYS": encryption_key,
        "PASSTHRU_METRICS_PORT": "0",
    }
    with (tmp_path / "api.log").open("w") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not any("multiprocessing.spawn" in c for c in children_of(api.pid)):
            assert time.monotonic() < deadline, "the intake process did not start"
            assert api.poll() is None, (tmp_path / "api.log").read_text()
            time.sleep(0.001)

        # When Ctrl-C reaches the whole group, as soon as the process is there (while the
        # API is still starting it)
        os.killpg(api.pid, signal.SIGINT)

        # Then the API stops its intake process and ends, and nothing printed a traceback
        assert api.wait(timeout=30) == 0
    finally:
        if api.poll() is None:
            os.killpg(api.pid, signal.SIGKILL)
    printed = (tmp_path / "api.log").read_text()
    assert "Application shutdown complete" in printed
    assert "Traceback" not in printed
    assert "KeyboardInterrupt" not in printed


def children_of(pid: int) -> list[str]:
    """The command lines of a process's children."""
    lines = []
    with contextlib.suppress(OSError):  # the process or one of its threads ended meanwhile
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    for task in tasks:
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    lines.append(Path(f"/proc/{child}/cmdline").read_text().replace("\0", " "))
    return lines


def test_a_batch_written_before_the_process_died_is_published_and_named_not_to_send_again(
    make_app: Callable[..., FastAPI],
    settings_of: Callable[..., Settings],
    engine: Engine,
    tenant_and_key: tuple[Tenant, str],
    published: PublishedIds,
) -> None:
    tenant, key = tenant_and_key
    app = make_app()  # batches in its threads, with the publisher that records
    connect(TestClient(app), headers_of(key))
    intake = BatchProcess(settings_of(), engine, published)

    # Given a batch written whole (its transaction committed) by a process that then died
    batch_id = new_id("bt")
    taker = app.state.batch_intake.taker
    taken = taker.take(tenant, [GOOD, BAD, GOOD], "user-1", batch_id)
    published.ids.clear()
    published.tenant_of.clear()

    # When the API learns what the dead process left
    error = intake.left_by_death(tenant.id, batch_id)

    # Then the answer names the batch and says not to send it again (not a 503 to retry)
    assert error.status_code == 500
    assert error.error == "batch_interrupted"
    assert batch_id in error.details[0].message
    assert "Do not send it again" in error.details[0].message
    # and its calls are published (again), so they run without waiting for the sweeper
    assert sorted(published.ids) == sorted(call_id for _, call_id in taken.accepted)
    assert set(published.tenant_of.values()) == {tenant.id}  # on the tenant's bulk shard


def test_a_batch_the_process_died_before_writing_is_a_503_to_send_again(
    settings_of: Callable[..., Settings], engine: Engine, published: PublishedIds
) -> None:
    intake = BatchProcess(settings_of(), engine, published)

    error = intake.left_by_death("tn_any", new_id("bt"))

    assert error.status_code == 503
    assert error.headers == {"Retry-After": "1"}
    assert published.ids == []
