"""Where rate-limit state lives: Redis (one atomic Lua script per decision, on Redis' clock,
shared by every worker) or memory (one process, for tests and tools). Both run the
arithmetic of `models/ratelimit/rules.py`; the same tests run against both."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from models.ratelimit.rules import Booking, Rule, book


@dataclass(frozen=True, slots=True)
class Ask:
    """One call asking for a slot."""

    rules: list[Rule]
    pause_key: str


class Limiter(Protocol):
    def book_many(
        self, asks: Sequence[Ask], *, near_ms: int, horizon_ms: int, now_ms: int | None = None
    ) -> list[Booking]:
        """Book a slot for each call, in order (one round trip for all); see
        `models.ratelimit.rules.book` for `near_ms` and `horizon_ms`."""
        ...

    def pause(self, key: str, for_ms: int, *, now_ms: int | None = None) -> int:
        """Keep calls of `key` from going for `for_ms` (a longer pause already set stands);
        return when the pause ends."""
        ...

    def read(self, keys: Sequence[str]) -> tuple[int, list[int | None]]:
        """The clock now and each key's stored value (TAT or pause end), for reports."""
        ...


# Every script starts here: `now` in ms is ARGV[1] when a test gives one, else Redis' TIME
# (scripts without arguments always take TIME).
_NOW = """
local now
if ARGV[1] ~= nil and ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: the pause key, then one key per rule.
# ARGV: now in ms ('' = Redis TIME), near and horizon in ms, then interval and tolerance
# per rule. Returns {slot, now, reason (0 none, -1 paused, i the i-th rule), booked flag per
# rule...}. The arithmetic of models.ratelimit.rules.book.
_BOOK = (
    _NOW
    + """
local near, horizon = tonumber(ARGV[2]), tonumber(ARGV[3])
local start = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local slot, why = start, 0
if start > now then why = -1 end
local n = #KEYS - 1
local tats, own = {}, {}
for i = 1, n do
  tats[i] = tonumber(redis.call('GET', KEYS[i + 1]) or '')
  if tats[i] then
    own[i] = tats[i] - tonumber(ARGV[3 + 2 * i])
    if own[i] > slot then slot, why = own[i], i end
  end
end
local out = {slot, now, why}
for i = 1, n do
  local take = slot - now <= near
    or (slot - now <= horizon and own[i] ~= nil and own[i] - now > near)
  if take then
    local new_tat = math.max(tats[i] or slot, slot) + tonumber(ARGV[2 + 2 * i])
    redis.call('SET', KEYS[i + 1], string.format('%d', new_tat), 'PX',
      string.format('%d', new_tat - now + 1000))
    out[3 + i] = 1
  else
    out[3 + i] = 0
  end
end
return out
"""
)

# KEYS: the pause key. ARGV: now in ms ('' = Redis TIME), pause length in ms.
_PAUSE = (
    _NOW
    + """
local till = now + tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if till > current then
  redis.call('SET', KEYS[1], string.format('%d', till), 'PX', ARGV[2])
  return till
end
return current
"""
)

_READ = (
    _NOW
    + """
return {now, unpack(redis.call('MGET', unpack(KEYS)))}
"""
)


def _paused_until(keys: list[str], answer: list[Any]) -> dict[str, tuple[int, int | None]]:
    """`_READ`'s answer (the clock, then each key's value) as each pause key's (now, pause
    end)."""
    at, *values = answer
    return {
        key: (int(at), None if value is None else int(value))
        for key, value in zip(keys, values, strict=True)
    }


def _reason(ask: Ask, why: int) -> str | None:
    if why == -1:
        return "paused by the upstream"
    return ask.rules[why - 1].label if why > 0 else None


class RedisLimiter:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._book = client.register_script(_BOOK)
        self._pause = client.register_script(_PAUSE)
        self._read = client.register_script(_READ)

    def book_many(
        self, asks: Sequence[Ask], *, near_ms: int, horizon_ms: int, now_ms: int | None = None
    ) -> list[Booking]:
        """A call under no rule only asks whether its pause has passed: those are read all
        at once (one MGET of their distinct pause keys), in the same round trip as the
        scripts of the calls that book."""
        if not asks:
            return []
        now = "" if now_ms is None else str(now_ms)
        calls = []
        for ask in asks:
            if not ask.rules:
                continue
            args: list[str | int] = [now, near_ms, horizon_ms]
            for rule in ask.rules:
                args += [rule.interval_ms, rule.tolerance_ms]
            calls.append(([ask.pause_key, *(r.key for r in ask.rules)], args))
        pauses = sorted({ask.pause_key for ask in asks if not ask.rules})
        if len(calls) + bool(pauses) == 1:  # one EVALSHA: a pipeline would ask SCRIPT EXISTS
            answers = (
                [self._book(keys=calls[0][0], args=calls[0][1])]
                if calls
                else [self._read(keys=pauses, args=[now])]
            )
        else:
            pipe = self._client.pipeline(transaction=False)
            for keys, args in calls:
                self._book(keys=keys, args=args, client=pipe)
            if pauses:
                self._read(keys=pauses, args=[now], client=pipe)
            answers = pipe.execute()
        paused = _paused_until(pauses, answers[-1]) if pauses else {}
        window = {"near_ms": near_ms, "horizon_ms": horizon_ms}
        booked = iter(answers)
        bookings = []
        for ask in asks:
            if not ask.rules:
                at, until = paused[ask.pause_key]
                bookings.append(book([], [], now_ms=at, paused_until_ms=until, **window))
                continue
            slot, at, why, *flags = next(booked)
            taken = tuple(bool(f) for f in flags)
            bookings.append(Booking(int(slot), int(at), taken, _reason(ask, int(why))))
        return bookings

    def pause(self, key: str, for_ms: int, *, now_ms: int | None = None) -> int:
        now = "" if now_ms is None else str(now_ms)
        return int(self._pause(keys=[key], args=[now, max(1, for_ms)]))

    def read(self, keys: Sequence[str]) -> tuple[int, list[int | None]]:
        if not keys:
            return int(time.time() * 1000), []
        now, *values = self._read(keys=list(keys))
        return int(now), [None if v is None else int(v) for v in values]


class MemoryLimiter:
    """The same decisions within one process; `clock` gives milliseconds."""

    def __init__(self, clock: Callable[[], int] | None = None) -> None:
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._values: dict[str, tuple[int, int]] = {}  # key -> (value, expires at)
        self._lock = threading.Lock()

    def _get(self, key: str, now: int) -> int | None:
        found = self._values.get(key)
        return found[0] if found and found[1] > now else None

    def book_many(
        self, asks: Sequence[Ask], *, near_ms: int, horizon_ms: int, now_ms: int | None = None
    ) -> list[Booking]:
        out = []
        with self._lock:
            for ask in asks:
                now = self._clock() if now_ms is None else now_ms
                booking = book(
                    ask.rules,
                    [self._get(r.key, now) for r in ask.rules],
                    now_ms=now,
                    paused_until_ms=self._get(ask.pause_key, now),
                    near_ms=near_ms,
                    horizon_ms=horizon_ms,
                )
                for rule, tat in zip(ask.rules, booking.tats_ms, strict=True):
                    if tat is not None:
                        self._values[rule.key] = (tat, tat + 1000)
                out.append(booking)
        return out

    def pause(self, key: str, for_ms: int, *, now_ms: int | None = None) -> int:
        with self._lock:
            now = self._clock() if now_ms is None else now_ms
            till = now + max(1, for_ms)
            current = self._get(key, now) or 0
            if till > current:
                self._values[key] = (till, till)
                return till
            return current

    def read(self, keys: Sequence[str]) -> tuple[int, list[int | None]]:
        with self._lock:
            now = self._clock()
            return now, [self._get(k, now) for k in keys]


class Unlimited:
    """No limits at all: every call may go at once, pauses are forgotten (tests of other
    things, and a deployment that limits nothing)."""

    def book_many(
        self, asks: Sequence[Ask], *, near_ms: int, horizon_ms: int, now_ms: int | None = None
    ) -> list[Booking]:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return [Booking(now, now, tuple(True for _ in ask.rules), None) for ask in asks]

    def pause(self, key: str, for_ms: int, *, now_ms: int | None = None) -> int:
        return 0

    def read(self, keys: Sequence[str]) -> tuple[int, list[int | None]]:
        return int(time.time() * 1000), [None for _ in keys]


UNLIMITED: Limiter = Unlimited()


_PAUSED_FOR = (
    _NOW
    + """
return math.max(0, tonumber(redis.call('GET', KEYS[1]) or '0') - now)
"""
)


def make_pause_gate(url: str) -> Callable[[str], Awaitable[int]]:
    """An async check of one pause key, for the sender's event loop (build it there). If
    Redis does not answer, the request goes: the booking already checked the pause."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url, socket_timeout=2)
    script = client.register_script(_PAUSED_FOR)

    async def paused_ms(key: str) -> int:
        try:
            return int(await script(keys=[key]))
        except (redis.RedisError, OSError):
            return 0

    return paused_ms
