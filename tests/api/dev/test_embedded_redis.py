"""The embedded Redis of `passthru dev`: the one asked for or refused with a reason, and a
fakeredis fallback that runs the Lua scripts passthru and Celery depend on as redis-server
does."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from api.dev.banner import redis_line as _redis_line
from api.dev.embedded_redis import EmbeddedRedis, free_port, start_embedded_redis
from api.dev.run import run_dev
from models.catalog.spec import RateLimitSpec
from models.errors import ConfigError
from models.ratelimit.rules import rule_of
from models.ratelimit.store import Ask, RedisLimiter

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_900_000_000_000  # a fixed "now" in ms


@pytest.fixture
def fake() -> Iterator[EmbeddedRedis]:
    server = start_embedded_redis(kind="fakeredis")
    yield server
    server.stop()


def test_fakeredis_is_started_when_asked_even_with_redis_server_on_path(
    fake: EmbeddedRedis,
) -> None:
    client = redis.Redis.from_url(fake.url)
    try:
        assert fake.kind == "fakeredis"
        assert client.ping()
        assert fake._process is None  # in this process, no redis-server child
    finally:
        client.close()


def test_a_lock_is_released_by_its_script_on_fakeredis(fake: EmbeddedRedis) -> None:
    # Given a Redis lock, as Celery takes them (its release is EVALSHA of a Lua script)
    client = redis.Redis.from_url(fake.url)
    try:
        lock = client.lock("passthru:test:lock", timeout=30)
        assert lock.acquire(blocking=False)
        # When it is released, Then the key is gone
        lock.release()
        assert client.exists("passthru:test:lock") == 0
    finally:
        client.close()


def test_the_rate_limiter_books_the_same_slots_on_fakeredis_as_on_redis_server(
    fake: EmbeddedRedis, redis_server: EmbeddedRedis
) -> None:
    # Given a paused app, a limit per app and a tighter one per account, and 30 calls
    # asking at the same instant, one in two under both limits
    pause = "passthru:rl:pause:test:app"
    per_app = rule_of(RateLimitSpec(scope="app", limit=10, period_s=1, burst=2), "rl:a", "test")
    per_account = rule_of(RateLimitSpec(scope="account", limit=3, period_s=1), "rl:b", "test")
    asks = [Ask([per_app], pause), Ask([per_app, per_account], pause)] * 15

    def bookings(server: EmbeddedRedis) -> list[tuple[bool, int, str | None]]:
        client = redis.Redis.from_url(server.url)
        try:
            client.flushdb()
            limiter = RedisLimiter(client)
            limiter.pause(pause, 250, now_ms=T0)
            booked = limiter.book_many(asks, near_ms=2_000, horizon_ms=60_000, now_ms=T0)
            return [(b.complete, b.wait_ms, b.reason) for b in booked]
        finally:
            client.close()

    # When both servers book them, Then they decide alike, each limit holding some back
    on_fake = bookings(fake)
    assert on_fake == bookings(redis_server)
    assert {reason for _, _, reason in on_fake} >= {
        "paused by the upstream",
        "test: 10 per 1 s",
        "test: 3 per 1 s per account",
    }


def test_redis_server_asked_for_but_not_on_path_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="redis-server is not on PATH"):
        start_embedded_redis(kind="redis-server")


def test_fakeredis_without_lua_is_refused_at_start() -> None:
    # Given fakeredis where `lupa` cannot be imported (installed without its `lua` extra)
    script = (
        "import sys; sys.modules['lupa'] = None\n"
        "from api.dev.embedded_redis import start_embedded_redis\n"
        "from models.errors import ConfigError\n"
        "try:\n"
        "    start_embedded_redis(kind='fakeredis')\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('started')\n"
    )
    # When the embedded Redis starts, Then it is refused, with what to install
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "cannot run Lua scripts" in done.stdout
    assert "fakeredis[lua]" in done.stdout


def test_a_redis_server_interrupted_while_it_starts_is_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given Ctrl-C arriving while `passthru dev` waits for its redis-server to answer
    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("api.dev.embedded_redis._check_scripts", interrupted)
    port = free_port()

    # When the start is interrupted
    with pytest.raises(KeyboardInterrupt):
        start_embedded_redis(port, kind="redis-server")

    # Then the server it had started is not left running (it is in a session of its own,
    # out of the terminal's reach)
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    try:
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        client.close()


def test_dev_refuses_an_embedded_redis_when_redis_url_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="REDIS_URL is set"):
        run_dev(0, "fakeredis")


def test_the_banner_names_the_redis_and_hides_a_password(fake: EmbeddedRedis) -> None:
    assert _redis_line(fake, fake.url).startswith(f"fakeredis on {fake.url} ")
    given = _redis_line(None, "redis://user:s3cret@redis.internal:6380/2")
    assert given.startswith("redis://user:***@redis.internal:6380/2 ")
    assert "REDIS_URL" in given
    assert "s3cret" not in given
