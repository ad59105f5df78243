"""The rate limiter: the same decisions from the Lua script on a real Redis and from memory,
on a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from api.dev.embedded_redis import EmbeddedRedis
from models.catalog.apps import parse_catalog
from models.catalog.spec import RateLimitSpec
from models.ratelimit.rules import (
    Booking,
    KeyOf,
    Rule,
    book,
    key_of,
    parse_rate,
    pause_key,
    rule_of,
    rules_for,
    usage,
)
from models.ratelimit.store import Ask, Limiter, MemoryLimiter, RedisLimiter

T0 = 1_900_000_000_000  # a fixed "now" in ms, far from Redis' own clock
HORIZON = 60_000
PAUSE = "passthru:rl:pause:test:app"
ALL: dict[str, int] = {"near_ms": HORIZON, "horizon_ms": HORIZON}  # book every slot in full


def rule(limit: int, period_s: float, burst: int | None = None, key: str = "k") -> Rule:
    spec = RateLimitSpec(scope="app", limit=limit, period_s=period_s, burst=burst)
    return rule_of(spec, f"passthru:rl:test:{key}", "test")


@pytest.fixture(params=["redis", "memory"])
def limiter(request: pytest.FixtureRequest) -> Iterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter(clock=lambda: T0)
        return
    server: EmbeddedRedis = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    client.flushdb()  # the test's own server
    yield RedisLimiter(client)
    client.close()


def ask(*rules: Rule) -> Ask:
    return Ask(list(rules), PAUSE)


def slots(limiter: Limiter, a: Ask, n: int, now: int = T0) -> list[int]:
    return [b.wait_ms for b in limiter.book_many([a] * n, **ALL, now_ms=now)]


def test_the_first_call_goes_at_once(limiter: Limiter) -> None:
    [b] = limiter.book_many([ask(rule(10, 1))], **ALL, now_ms=T0)
    assert (b.complete, b.wait_ms, b.reason) == (True, 0, None)


def test_waiting_calls_get_evenly_spaced_slots(limiter: Limiter) -> None:
    # Given 10 per second with no burst / When 5 calls ask at the same instant
    # Then they are booked 100 ms apart, in order
    assert slots(limiter, ask(rule(10, 1)), 5) == [0, 100, 200, 300, 400]


def test_a_burst_goes_at_once_then_the_rate_applies(limiter: Limiter) -> None:
    assert slots(limiter, ask(rule(10, 1, burst=3)), 5) == [0, 0, 0, 100, 200]


def test_the_strictest_of_several_limits_decides(limiter: Limiter) -> None:
    # Given a call under 10/s for the app and 2/s for its path
    a = ask(rule(10, 1, key="app"), rule(2, 1, key="path"))
    # Then calls are spaced by the stricter one, and the reason names it
    bookings = limiter.book_many([a] * 3, **ALL, now_ms=T0)
    assert [b.wait_ms for b in bookings] == [0, 500, 1000]
    assert bookings[1].reason == "test: 2 per 1 s"


def test_time_passing_frees_slots(limiter: Limiter) -> None:
    a = ask(rule(10, 1))
    assert slots(limiter, a, 3) == [0, 100, 200]
    # One second later the key is idle again
    assert slots(limiter, a, 1, now=T0 + 1_000) == [0]


def test_a_slot_beyond_the_horizon_is_not_booked(limiter: Limiter) -> None:
    # Given 1 call per 10 s, and a horizon of 25 s
    a = ask(rule(1, 10))
    first = limiter.book_many([a] * 4, near_ms=25_000, horizon_ms=25_000, now_ms=T0)
    # Then three calls are booked (0, 10, 20 s) and the fourth, 30 s out, is not
    assert [(b.complete, b.wait_ms) for b in first] == [
        (True, 0),
        (True, 10_000),
        (True, 20_000),
        (False, 30_000),
    ]
    # And not booking it left the key as it was
    [again] = limiter.book_many([a], near_ms=25_000, horizon_ms=25_000, now_ms=T0)
    assert again.wait_ms == 30_000


def test_a_pause_holds_every_call_of_the_key(limiter: Limiter) -> None:
    # Given the upstream asked for 3 s of quiet
    until = limiter.pause(PAUSE, 3_000, now_ms=T0)
    assert until == T0 + 3_000
    # Then even an unlimited call waits for the end of the pause
    [b] = limiter.book_many([Ask([], PAUSE)], **ALL, now_ms=T0 + 500)
    assert (b.wait_ms, b.reason) == (2_500, "paused by the upstream")
    # And limited calls are spaced from the end of the pause
    assert slots(limiter, ask(rule(10, 1)), 2, now=T0 + 500) == [2_500, 2_600]


def test_a_message_mixing_unlimited_and_limited_calls_keeps_their_order(limiter: Limiter) -> None:
    # Given one key paused for 3 s and another not paused at all
    quiet = "passthru:rl:pause:test:other"
    limiter.pause(PAUSE, 3_000, now_ms=T0)
    # When one message asks for unlimited calls of both keys between limited ones
    asks = [Ask([], PAUSE), ask(rule(10, 1)), Ask([], quiet), Ask([], PAUSE), ask(rule(10, 1))]
    b = limiter.book_many(asks, **ALL, now_ms=T0)
    # Then each answer is its own call's: the paused key waits, the other goes at once, and
    # the limited calls are spaced from the end of the pause
    assert [(x.wait_ms, x.reason, x.booked) for x in b] == [
        (3_000, "paused by the upstream", ()),
        (3_000, "paused by the upstream", (True,)),
        (0, None, ()),
        (3_000, "paused by the upstream", ()),
        (3_100, "test: 10 per 1 s", (True,)),
    ]


def test_unlimited_calls_cost_redis_one_read_whatever_their_number(
    redis_server: EmbeddedRedis,
) -> None:
    # Given a message of 100 calls under no limit, for two keys
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    limiter = RedisLimiter(client)
    asks = [Ask([], f"passthru:rl:pause:test:{i % 2}") for i in range(100)]
    client.config_resetstat()
    # When they are booked
    bookings = limiter.book_many(asks, **ALL)
    # Then Redis ran one script for all of them, not one per call
    stats = client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert "cmdstat_eval" not in stats
    assert all(b.complete and b.wait_ms == 0 for b in bookings)
    client.close()


def test_a_shorter_pause_does_not_cut_a_longer_one(limiter: Limiter) -> None:
    limiter.pause(PAUSE, 5_000, now_ms=T0)
    assert limiter.pause(PAUSE, 1_000, now_ms=T0) == T0 + 5_000


def test_read_reports_what_is_stored(limiter: Limiter) -> None:
    r = rule(10, 1)
    slots(limiter, ask(r), 3)
    limiter.pause(PAUSE, 2_000, now_ms=T0)
    _, values = limiter.read([r.key, PAUSE, "passthru:rl:nothing"])
    assert values == [T0 + 300, T0 + 2_000, None]


def test_redis_uses_its_own_clock_when_none_is_given(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    limiter = RedisLimiter(client)
    seconds, micros = client.time()
    [b] = limiter.book_many([ask(rule(10, 1))], **ALL)
    assert abs(b.now_ms - (seconds * 1000 + micros // 1000)) < 5_000
    client.close()


def test_a_far_slot_is_booked_only_on_the_limits_that_far_behind(limiter: Limiter) -> None:
    # Given a narrow limit (1 per 10 s, for one path) and a wide one (10 per second, for the
    # account) that a call falls under together, and calls to other paths under the wide one
    narrow, wide = rule(1, 10, key="path"), rule(10, 1, key="account")
    both = ask(narrow, wide)
    # When three calls to the narrow path ask, with a near bound of 2 s
    b = limiter.book_many([both] * 3, near_ms=2_000, horizon_ms=HORIZON, now_ms=T0)
    # Then the first is booked on both; the later ones (10 s and 20 s out) only on the
    # narrow limit
    assert [(x.wait_ms, x.booked) for x in b] == [
        (0, (True, True)),
        (10_000, (True, False)),
        (20_000, (True, False)),
    ]
    # And a call to another path, under the wide limit only, is not held back by them
    [other] = limiter.book_many([ask(wide)], near_ms=2_000, horizon_ms=HORIZON, now_ms=T0)
    assert other.wait_ms == 100


def test_a_far_pause_books_nothing(limiter: Limiter) -> None:
    limiter.pause(PAUSE, 5_000, now_ms=T0)
    [b] = limiter.book_many([ask(rule(10, 1))], near_ms=2_000, horizon_ms=HORIZON, now_ms=T0)
    assert (b.wait_ms, b.booked, b.reason) == (5_000, (False,), "paused by the upstream")


# --- the pure parts ---------------------------------------------------------------------------


def test_book_is_the_same_function_the_backends_run() -> None:
    r = rule(10, 1)
    first = book([r], [None], now_ms=T0, paused_until_ms=None, **ALL)
    second = book(
        [r],
        list(first.tats_ms),
        now_ms=T0,
        paused_until_ms=None,
        near_ms=HORIZON,
        horizon_ms=HORIZON,
    )
    assert (first.wait_ms, second.wait_ms) == (0, 100)
    assert isinstance(second, Booking)


def test_usage_counts_the_slots_booked_ahead() -> None:
    r = rule(10, 1, burst=2)
    assert usage(r, None, T0) == usage(r, T0 - 1, T0)
    assert usage(r, T0 + 300, T0).booked_ahead == 3
    assert usage(r, T0 + 300, T0).next_free_ms == 200


APPS = parse_catalog(
    {
        "chat": {
            "name": "Chat",
            "base_url": "https://chat.example/api",
            "allowed_hosts": ["chat.example"],
            "auth": {"type": "bearer"},
            "rate_limits": [
                {"scope": "account", "limit": 50, "period_s": 60},
                {"scope": "account", "limit": 20, "period_s": 60, "path": "^/api/conversations\\."},
                {"scope": "tenant", "limit": 100, "period_s": 1},
            ],
        },
        "crm": {
            "name": "CRM",
            "base_url": "https://crm.example",
            "allowed_hosts": ["crm.example"],
            "auth": {"type": "bearer"},
            "rate_limits": [{"scope": "app", "limit": 100, "period_s": 10, "burst": 10}],
        },
    },
    "test",
)


def test_rules_follow_the_scope_and_the_path() -> None:
    chat = APPS["chat"]
    history = rules_for(chat, tenant_id="tn1", account_id="ca1", path="/api/conversations.list")
    assert [r.key for r in history] == [
        "passthru:rl:chat:0:acct:ca1",
        "passthru:rl:chat:1:acct:ca1",
        "passthru:rl:chat:2:tenant:tn1",
    ]
    post = rules_for(chat, tenant_id="tn1", account_id="ca1", path="/api/chat.postMessage")
    assert [r.label for r in post] == [
        "chat: 50 per 60 s per account",
        "chat: 100 per 1 s per tenant",
    ]
    [crm] = rules_for(APPS["crm"], tenant_id="tn1", account_id="ca1", path="/x")
    assert (crm.key, crm.interval_ms, crm.tolerance_ms) == ("passthru:rl:crm:0:app", 100, 900)


def test_the_pause_follows_how_the_upstream_counts() -> None:
    assert pause_key(APPS["chat"], "ca1") == "passthru:rl:pause:chat:acct:ca1"
    assert pause_key(APPS["crm"], "ca1") == "passthru:rl:pause:crm:app"


def test_the_operators_tenant_cap_comes_after_the_apps_limits() -> None:
    cap = parse_rate("100/1/20")
    assert cap is not None
    rules = rules_for(
        APPS["crm"], tenant_id="tn1", account_id="ca1", path="/x", tenant_cap=cap, lane="bulk"
    )
    assert [r.key for r in rules] == ["passthru:rl:crm:0:app", "passthru:rl:tenant-cap:tn1:bulk"]
    assert (rules[1].interval_ms, rules[1].tolerance_ms) == (10, 190)
    assert rules[1].label == "tenant cap (bulk): 100 per 1 s"


def test_every_key_the_limiter_makes_reads_back_as_what_it_belongs_to() -> None:
    cap = parse_rate("100/1")
    assert cap is not None
    keys = [
        r.key
        for r in rules_for(
            APPS["chat"],
            tenant_id="tn1",
            account_id="ca1",
            path="/api/conversations.list",
            tenant_cap=cap,
            lane="bulk",
        )
    ]
    keys += [pause_key(APPS["chat"], "ca1"), pause_key(APPS["crm"], "ca1")]
    assert [key_of(k) for k in keys] == [
        KeyOf("limit", "chat", 0),
        KeyOf("limit", "chat", 1),
        KeyOf("limit", "chat", 2),
        KeyOf("tenant-cap"),
        KeyOf("pause", "chat"),
        KeyOf("pause", "crm"),
    ]
    assert key_of("passthru:quota:submit:tn1") is None
    assert key_of("passthru:rl:odd") is None


@pytest.mark.parametrize("text", ["100", "a/1", "100/x", "1/2/3/4", "0/1"])
def test_a_bad_rate_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="N/SECONDS"):
        parse_rate(text)


def test_no_rate_is_no_cap() -> None:
    assert parse_rate("") is None
