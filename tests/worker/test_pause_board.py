"""The pause board (worker/ratelimit/pause_board.py), on a real Redis: it learns the pauses set
before it started and those announced after, and only then lets a call under no rule book
without asking Redis; while it is not live, every call asks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import pytest
import redis

from api.dev.embedded_redis import EmbeddedRedis, start_embedded_redis
from models.catalog.spec import RateLimitSpec
from models.ratelimit.rules import Booking, rule_of
from models.ratelimit.store import Ask, RedisLimiter
from worker.ratelimit.pause_board import SKEW_MS, BoardedLimiter, PauseBoard

APP_PAUSE = "passthru:rl:pause:crm:app"
ACCOUNT_PAUSE = "passthru:rl:pause:crm:acct:ca_1"
WINDOW = {"near_ms": 2_000, "horizon_ms": 120_000}


def eventually(check: Callable[[], bool], within_s: float = 5.0) -> None:
    end = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < end, "not within the time given"
        time.sleep(0.01)


class Counting(RedisLimiter):
    """The limiter, keeping the pause keys of the asks that reach Redis."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.asked: list[str] = []

    def book_many(
        self, asks: Sequence[Ask], *, near_ms: int, horizon_ms: int, now_ms: int | None = None
    ) -> list[Booking]:
        self.asked += [ask.pause_key for ask in asks]
        return super().book_many(asks, near_ms=near_ms, horizon_ms=horizon_ms, now_ms=now_ms)


@pytest.fixture
def board(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> Iterator[PauseBoard]:
    made = PauseBoard(lambda: redis.Redis.from_url(redis_server.url))
    yield made
    made.stop()


def test_a_board_knows_pauses_set_before_it_and_announced_after(
    redis_client: redis.Redis, redis_server: EmbeddedRedis, board: PauseBoard
) -> None:
    # Given a pause set before the board started
    RedisLimiter(redis_client).pause(APP_PAUSE, 60_000)
    assert not board.clear(ACCOUNT_PAUSE)  # not live yet: nothing is clear
    board.start()
    eventually(lambda: board.live)
    assert not board.clear(APP_PAUSE)
    assert board.clear(ACCOUNT_PAUSE)
    # When another process pauses a key / Then the board learns it from the channel
    other = redis.Redis.from_url(redis_server.url)
    RedisLimiter(other).pause(ACCOUNT_PAUSE, 60_000)
    eventually(lambda: not board.clear(ACCOUNT_PAUSE))
    other.close()


def test_a_pause_is_clear_once_it_ended_and_the_skew_passed(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    now = [1_000_000]
    board = PauseBoard(lambda: redis.Redis.from_url(redis_server.url), clock_ms=lambda: now[0])
    board.start()
    try:
        eventually(lambda: board.live)
        board.paused(APP_PAUSE, 1_000_500)
        now[0] = 1_000_500 + SKEW_MS
        assert not board.clear(APP_PAUSE)
        now[0] += 1
        assert board.clear(APP_PAUSE)
    finally:
        board.stop()


def test_calls_under_no_rule_book_without_redis_only_while_clear(
    redis_client: redis.Redis, board: PauseBoard
) -> None:
    inner = Counting(redis_client)
    limiter = BoardedLimiter(inner, board)
    spec = RateLimitSpec(scope="app", limit=10, period_s=1)
    limited = Ask([rule_of(spec, "passthru:rl:crm:0:app", "crm")], APP_PAUSE)
    free = Ask([], ACCOUNT_PAUSE)
    # Before the board is live, every call asks Redis
    limiter.book_many([free], **WINDOW)
    assert inner.asked == [ACCOUNT_PAUSE]
    board.start()
    eventually(lambda: board.live)
    # Once it is, a call under no rule whose key is clear books here; one under a rule asks
    inner.asked.clear()
    answers = limiter.book_many([free, limited, free], **WINDOW)
    assert inner.asked == [APP_PAUSE]
    assert [(a.wait_ms, a.complete) for a in answers] == [(0, True), (0, True), (0, True)]
    # and a paused key asks Redis, which makes it wait
    limiter.pause(ACCOUNT_PAUSE, 30_000)  # this process knows at once
    [paused] = limiter.book_many([free], **WINDOW)
    assert inner.asked == [APP_PAUSE, ACCOUNT_PAUSE]
    assert paused.wait_ms > 25_000
    assert paused.reason == "paused by the upstream"


def test_without_redis_the_board_is_not_live_and_every_call_asks() -> None:
    server = start_embedded_redis()
    board = PauseBoard(lambda: redis.Redis.from_url(server.url, socket_timeout=2))
    board.start()
    try:
        eventually(lambda: board.live)
        # When Redis goes away / Then the board stops vouching for any key
        server.stop()
        eventually(lambda: not board.live, within_s=15)
        assert not board.clear(ACCOUNT_PAUSE)
    finally:
        board.stop()
