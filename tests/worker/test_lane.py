"""The interactive lane's consumer: threads taking ids off the Redis list and running them,
one at a time each, against a real redis-server. No test measures time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from api.dev.embedded_redis import EmbeddedRedis
from models.keys import LIST_INTERACTIVE
from worker.held import RedisHolds, lane_key
from worker.lane import InteractiveConsumer, RunCalls

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
        redis_client.rpush(LIST_INTERACTIVE, *[f"fc_{i}" for i in range(10)])
        assert runs.wait_for(10) == sorted(f"fc_{i}" for i in range(10))
    assert redis_client.llen(LIST_INTERACTIVE) == 0
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
            redis_client.rpush(LIST_INTERACTIVE, "fc_inflight")
            assert started.wait(10)
            # When the process is found dead at that moment
            held = RedisHolds(redis_client).take("host:1:abc")
        finally:
            finish.set()
    # Then the id it had popped is among what it held (and no longer on the shared list)
    assert held == ["fc_inflight"]
    assert redis_client.llen(LIST_INTERACTIVE) == 0


def test_a_call_that_fails_does_not_stop_its_thread(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    runs = Runs(failing=("fc_bad",))
    with running(redis_server, runs, 1):
        redis_client.rpush(LIST_INTERACTIVE, "fc_bad", "fc_good")
        assert runs.wait_for(2) == ["fc_bad", "fc_good"]


def test_a_stopped_consumer_takes_nothing_more(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    runs = Runs()
    with running(redis_server, runs, 2):
        pass
    redis_client.rpush(LIST_INTERACTIVE, "fc_later")
    time.sleep(0.2)
    assert runs.ids == []
    assert redis_client.lrange(LIST_INTERACTIVE, 0, -1) == [b"fc_later"]  # left for other workers


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
    """Connections blocked in a BLMOVE now."""
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
        redis_client.rpush(LIST_INTERACTIVE, *[f"fc_{i}" for i in range(8)])
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
            redis_client.rpush(LIST_INTERACTIVE, "fc_slow")
            assert started.wait(10)
            # When the next id comes
            redis_client.rpush(LIST_INTERACTIVE, "fc_next")
            # Then the other thread runs it while the first call still runs
            assert runs.wait_for(1) == ["fc_next"]
            assert not finish.is_set()
        finally:
            finish.set()
    assert sorted(runs.ids) == ["fc_next", "fc_slow"]
