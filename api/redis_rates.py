"""GCRA rate counters in Redis for the tenant bounds (`api/quotas.py`): one Lua round trip
per decision, shared by every API process, with Redis' own clock unless one is injected."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from models.catalog.spec import RateLimitSpec

# GCRA for `n` cells at once: admit if the new TAT stays within the burst; store it then.
# KEYS[1] the tenant's TAT (ms); ARGV now_ms ("" for Redis' TIME), interval_ms, burst, n.
# Returns 0 when admitted, else how many ms until `n` cells would fit.
_TAKE = """
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + n * interval
local wait = new_tat - burst * interval - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, new_tat - now))
return 0
"""


@dataclass(frozen=True)
class Rate:
    """`limit` per `period_s`, at most `burst` at once."""

    interval_ms: int
    burst: int
    text: str  # for people: "1000 per 1 s (burst 10000)"

    @classmethod
    def of(cls, spec: RateLimitSpec) -> Rate:
        burst = spec.burst or spec.limit
        return cls(
            interval_ms=max(1, math.ceil(spec.period_s * 1000 / spec.limit)),
            burst=burst,
            text=f"{spec.limit:g} per {spec.period_s:g} s (burst {burst})",
        )

    @classmethod
    def per_minute(cls, limit: int) -> Rate:
        return cls.of(RateLimitSpec(scope="tenant", limit=limit, period_s=60, burst=limit))


class RedisRate:
    """GCRA counters in Redis, one atomic script per decision."""

    def __init__(self, client: redis.Redis, now_ms: Callable[[], int] | None = None) -> None:
        self._script = client.register_script(_TAKE)
        self._now_ms = now_ms

    def take(self, key: str, rate: Rate, n: int = 1) -> int:
        """Take `n` cells: 0 when admitted, else the ms until they would fit (nothing
        taken). Raises redis.RedisError when Redis does not answer."""
        now = "" if self._now_ms is None else str(self._now_ms())
        wait = self._script(keys=[key], args=[now, rate.interval_ms, rate.burst, n])
        return int(wait)  # type: ignore[arg-type]


def quotas_client(redis_url: str) -> redis.Redis:
    """A Redis client quick to give up (no retries, half-second timeouts): a Redis that does
    not answer must not slow submissions down."""
    return redis.Redis.from_url(
        redis_url,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
