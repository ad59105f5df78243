"""The interactive lane's consumer: threads taking ids off the Redis list and running them,
one at a time each, against a real redis-server. No test measures time."""

from __future__ import annotations

import threading
import time

import redis

from api.dev.embedded_redis import EmbeddedRedis
from models.keys import LIST_INTERACTIVE
from worker.held import RedisHolds, lane_key
from worker.lane import InteractiveConsumer

HELD = lane_key("host:1:abc")


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
    consumer = InteractiveConsumer(lambda: redis.Redis.from_url(redis_server.url), runs, 3, HELD)
    consumer.start()
    try:
        redis_client.rpush(LIST_INTERACTIVE, *[f"fc_{i}" for i in range(10)])
        assert runs.wait_for(10) == sorted(f"fc_{i}" for i in range(10))
    finally:
        assert consumer.stop(10) is True
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

    consumer = InteractiveConsumer(lambda: redis.Redis.from_url(redis_server.url), run, 1, HELD)
    consumer.start()
    try:
        redis_client.rpush(LIST_INTERACTIVE, "fc_inflight")
        assert started.wait(10)
        # When the process is found dead at that moment
        held = RedisHolds(redis_client).take("host:1:abc")
    finally:
        finish.set()
        assert consumer.stop(10) is True
    # Then the id it had popped is among what it held (and no longer on the shared list)
    assert held == ["fc_inflight"]
    assert redis_client.llen(LIST_INTERACTIVE) == 0


def test_a_call_that_fails_does_not_stop_its_thread(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    runs = Runs(failing=("fc_bad",))
    consumer = InteractiveConsumer(lambda: redis.Redis.from_url(redis_server.url), runs, 1, HELD)
    consumer.start()
    try:
        redis_client.rpush(LIST_INTERACTIVE, "fc_bad", "fc_good")
        assert runs.wait_for(2) == ["fc_bad", "fc_good"]
    finally:
        assert consumer.stop(10) is True


def test_a_stopped_consumer_takes_nothing_more(
    redis_client: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    runs = Runs()
    consumer = InteractiveConsumer(lambda: redis.Redis.from_url(redis_server.url), runs, 2, HELD)
    consumer.start()
    assert consumer.stop(10) is True
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
