"""The interactive lane's consumer: threads taking ids off the tenants' Redis lists and
running them, one at a time each, against a real redis-server. No test measures time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from api.dev.embedded_redis import EmbeddedRedis
from models.interactive_due import InteractiveDue
from models.keys import DUE_TENANTS, LIST_INTERACTIVE
from worker.held import RedisHolds, lane_key
from worker.lane import InteractiveConsumer, RunCalls
from worker.shares import tenant_share

HELD = lane_key("host:1:abc")


@contextmanager
def running(server: EmbeddedRedis, run: RunCalls, threads: int) -> Iterator[InteractiveConsumer]:
    """A consumer of `threads` threads on `server`, running `run`; stopped at the end, which
    must end every thread."""
    consumer = InteractiveConsumer(lambda: redis.Redis.from_url(server.url), run, threads, HELD)
    consumer.start()
    try:
        yield consumer
    finally:
        assert consumer.stop(10) is True


def push(client: redis.Redis, *call_ids: str, tenant: str = "tn_a") -> None:
    """Publish `call_ids` as the API does, due now, for `tenant`."""
    InteractiveDue(client).push(call_ids, dict.fromkeys(call_ids, tenant))


def due(client: redis.Redis) -> int:
    return InteractiveDue(client).depth()


class Runs:
    """Records the ids run; fails the ones named in `failing`."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.ids: list[str] = []
        self.failing = failing
        self.lock = threading.Lock()

    def __call__(self, call_ids: list[str]) -> None:
        with self.lock:
            self.ids.extend(call_ids)
        if set(call_ids) & set(self.failing):
            raise RuntimeError("the database is away")

    def wait_for(self, n: int) -> list[str]:
        deadline = time.monotonic() + 10
        while len(self.ids) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return sorted(self.ids)


def test_every_id_pushed_is_run_once(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    runs = Runs()
    with running(redis_server, runs, 3):
        push(redis_client, *[f"fc_{i}" for i in range(10)])
        assert runs.wait_for(10) == sorted(f"fc_{i}" for i in range(10))
    assert due(redis_client) == 0
    assert redis_client.llen(DUE_TENANTS) == 0  # no tenant left in turn without calls
    assert redis_client.llen(HELD) == 0  # each id left the process's held list once run


def test_an_id_popped_by_a_process_that_dies_is_found_in_what_it_held(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    # Given a lane thread in the middle of running a call
    started, finish = threading.Event(), threading.Event()

    def run(call_ids: list[str]) -> None:
        started.set()
        finish.wait(10)

    with running(redis_server, run, 1):
        try:
            push(redis_client, "fc_inflight")
            assert started.wait(10)
            # When the process is found dead at that moment
            held = RedisHolds(redis_client).take("host:1:abc")
        finally:
            finish.set()
    # Then the id it had taken is among what it held (and no longer due)
    assert held == ["fc_inflight"]
    assert due(redis_client) == 0


class LosesOneAnswer(redis.Redis):
    """A client whose first script run (EVALSHA: a take) runs on the server but whose answer
    is lost, once for all the clients of the test: a reset connection, or a read timeout."""

    armed = threading.Event()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        answer = super().execute_command(*args, **options)
        if args[0] == "EVALSHA" and self.armed.is_set():
            self.armed.clear()
            raise redis.ConnectionError("the answer was lost")
        return answer


def test_an_id_whose_take_was_never_answered_is_run_from_the_held_list(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    # Given two calls due, and a lane whose first take moves one onto the held list but
    # never hears so
    push(redis_client, "fc_1", "fc_2")
    LosesOneAnswer.armed.set()
    runs = Runs()
    consumer = InteractiveConsumer(lambda: LosesOneAnswer.from_url(redis_server.url), runs, 2, HELD)
    consumer.start()
    try:
        # Then both are run, the one taken unanswered from the held list
        assert runs.wait_for(2) == ["fc_1", "fc_2"]
    finally:
        assert consumer.stop(10) is True
    assert not LosesOneAnswer.armed.is_set()
    assert due(redis_client) == 0
    assert redis_client.llen(HELD) == 0


def test_a_call_that_fails_does_not_stop_its_thread(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    runs = Runs(failing=("fc_bad",))
    with running(redis_server, runs, 1):
        push(redis_client, "fc_bad", "fc_good")
        assert runs.wait_for(2) == ["fc_bad", "fc_good"]


def test_a_stopped_consumer_takes_nothing_more(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    runs = Runs()
    with running(redis_server, runs, 2):
        pass
    push(redis_client, "fc_later")
    time.sleep(0.2)
    assert runs.ids == []
    assert due(redis_client) == 1  # left for other workers


def test_without_redis_the_threads_wait_and_still_stop() -> None:
    runs = Runs()
    consumer = InteractiveConsumer(
        lambda: redis.Redis.from_url("redis://127.0.0.1:1/0"), runs, 2, HELD
    )
    consumer.start()
    time.sleep(0.1)
    assert consumer.stop(10) is True
    assert runs.ids == []


def _waiting_on_the_list(client: redis.Redis) -> int:
    """Connections blocked in a BLMOVE (waiting for a tenant with calls due) now."""
    return sum(1 for c in client.client_list() if c["cmd"] == "blmove" and "b" in c["flags"])


def test_one_free_thread_of_a_process_waits_on_the_list_at_a_time(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    runs = Runs()
    with running(redis_server, runs, 4):
        deadline = time.monotonic() + 10
        while not _waiting_on_the_list(redis_client) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen = set()
        for _ in range(30):  # across more than one POLL_S: each turn's end and the next
            seen.add(_waiting_on_the_list(redis_client))
            time.sleep(0.05)
        # Four free threads, one Redis connection blocked on the list (four before)
        assert max(seen) == 1
        push(redis_client, *[f"fc_{i}" for i in range(8)])
        assert runs.wait_for(8) == sorted(f"fc_{i}" for i in range(8))


def test_the_turn_passes_on_while_a_call_runs(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    # Given two threads, one of them running a call that does not end yet
    started, finish = threading.Event(), threading.Event()
    runs = Runs()

    def run(call_ids: list[str]) -> None:
        if call_ids == ["fc_slow"]:
            started.set()
            finish.wait(10)
        runs(call_ids)

    with running(redis_server, run, 2):
        try:
            push(redis_client, "fc_slow")
            assert started.wait(10)
            # When another tenant's call comes (one tenant holds one thread of two at most)
            push(redis_client, "fc_next", tenant="tn_b")
            # Then the other thread runs it while the first call still runs
            assert runs.wait_for(1) == ["fc_next"]
            assert not finish.is_set()
        finally:
            finish.set()
    assert sorted(runs.ids) == ["fc_next", "fc_slow"]


def test_tenants_take_turns(redis_client: redis.Redis, redis_server: EmbeddedRedis) -> None:
    # Given a tenant with five calls due before another tenant's one
    push(redis_client, *[f"fc_a{i}" for i in range(5)], tenant="tn_a")
    push(redis_client, "fc_b0", tenant="tn_b")
    # When one thread runs them
    runs = Runs()
    with running(redis_server, runs, 1):
        runs.wait_for(6)
    # Then the second tenant's call comes second, not after the first tenant's backlog
    assert runs.ids == ["fc_a0", "fc_b0", "fc_a1", "fc_a2", "fc_a3", "fc_a4"]
    assert redis_client.llen(DUE_TENANTS) == 0


def test_the_share_of_one_tenant() -> None:
    assert [tenant_share(n) for n in (1, 2, 3, 4, 8, 32)] == [1, 1, 2, 3, 6, 24]


def test_a_tenant_whose_calls_do_not_end_holds_its_share_and_another_tenant_runs(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    # Given four threads and a tenant with six calls due that do not end yet
    finish = threading.Event()
    runs = Runs()

    def run(call_ids: list[str]) -> None:
        runs(call_ids)
        if call_ids[0].startswith("fc_slow"):
            finish.wait(10)

    with running(redis_server, run, 4):
        try:
            push(redis_client, *[f"fc_slow{i}" for i in range(6)], tenant="tn_slow")
            # When they have started (and a few of the lane's turns have passed)
            runs.wait_for(tenant_share(4))
            time.sleep(0.3)
            # Then they hold three threads of four, and the rest wait in Redis
            assert len(runs.ids) == tenant_share(4) == 3
            assert due(redis_client) == 3
            # And another tenant's call runs on the fourth while they still run
            push(redis_client, "fc_quick", tenant="tn_quick")
            assert "fc_quick" in runs.wait_for(4)
            assert not finish.is_set()
        finally:
            finish.set()
        # And once they end, the rest of the first tenant's calls run
        assert len(runs.wait_for(7)) == 7
    assert due(redis_client) == 0


def test_ids_an_older_api_pushed_on_the_former_list_are_run(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    redis_client.rpush(LIST_INTERACTIVE, "fc_old")
    runs = Runs()
    with running(redis_server, runs, 1):
        push(redis_client, "fc_new")
        assert runs.wait_for(2) == ["fc_new", "fc_old"]
