"""Per-tenant bounds on the work a tenant can start. Beyond one, a 429 in the error shape
(`too_many_requests`, the field naming what was exceeded, the message the setting) with
`Retry-After`.

- Calls submitted (a batch counts each accepted call): PASSTHRU_TENANT_SUBMIT_RATE,
  `N/SECONDS[/BURST]` (BURST defaults to N). One GCRA key per tenant in Redis, shared by
  every API process; one Lua round trip per decision.
- Calls not finished (queued, running, retrying): PASSTHRU_TENANT_MAX_OPEN_CALLS. Counted in
  the database at most once a second per tenant and process (OPEN_CALLS_TTL_S); the calls
  this process admits meanwhile are added to the count.
- Long polls open at once (`Prefer: wait`, `?wait=`): PASSTHRU_TENANT_MAX_WAITS, per API
  process. A submission's default wait (PASSTHRU_DEFAULT_WAIT_S) holds one too, and when
  none is free it does not wait instead of being refused (`waiting_if_free`).
- `POST /function-calls/{id}/redeliver`: PASSTHRU_TENANT_REDELIVERIES_PER_MIN, in Redis like
  submissions.

Accepting calls must work without Redis: when it does not answer, the Redis bounds admit
(fail open), log at most every LOG_EVERY_S, and leave Redis alone for REDIS_BACKOFF_S.
Clocks are injected: `now_ms` for Redis (Redis' own TIME when None), `monotonic` for the
process's own caches.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.errors import database_unavailable
from api.open_calls import OpenCallsCounter, open_calls_counter
from api.prometheus import REQUESTS_REFUSED
from api.redis_rates import Rate, RedisRate
from models.catalog.spec import RateLimitSpec
from models.errors import ApiError, ErrorDetail
from models.keys import QUOTA_PREFIX
from models.ratelimit.rules import parse_rate
from models.settings import Settings

log = logging.getLogger("passthru.api")

# A tenant's count of calls not finished is read again after this long.
OPEN_CALLS_TTL_S = 1.0
# After a count failed, the tenant's waiting submissions share its answer this long.
FAILURE_TTL_S = 1.0
# Retry-After for the bounds whose end no one can predict (calls finishing, polls ending).
OPEN_CALLS_RETRY_S = 5
WAITS_RETRY_S = 1
# After Redis failed to answer, it is left alone (every call admitted) this long.
REDIS_BACKOFF_S = 1.0
LOG_EVERY_S = 10.0


@dataclass
class Refused(ApiError):
    """A 429 for one of the tenant's bounds, `bound` (REQUESTS_REFUSED's label)."""

    bound: str = ""


def too_many(bound: str, field: str, message: str, retry_after_s: float) -> Refused:
    REQUESTS_REFUSED.labels(bound).inc()
    return Refused(
        "too_many_requests",
        [ErrorDetail(field, message)],
        429,
        {"Retry-After": str(max(1, math.ceil(retry_after_s)))},
        bound,
    )


class Quotas:
    def __init__(
        self,
        *,
        client: redis.Redis,
        count_open_calls: OpenCallsCounter,
        submit_rate: RateLimitSpec | None,
        max_open_calls: int,
        max_waits: int,
        redeliveries_per_min: int,
        now_ms: Callable[[], int] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rates = RedisRate(client, now_ms)
        self._count_open_calls = count_open_calls
        self._submit_rate = Rate.of(submit_rate) if submit_rate else None
        self._redeliver_rate = Rate.per_minute(redeliveries_per_min)
        self._max_open_calls = max_open_calls
        self._max_waits = max_waits
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._open: dict[str, tuple[float, int]] = {}  # tenant -> (read again after, count)
        self._counting: dict[str, threading.Lock] = {}  # tenant -> held while counting
        # tenant -> (until, the 503) after a count failed: the threads that waited for it
        # answer the same at once instead of each waiting for the database in turn
        self._failures: dict[str, tuple[float, ApiError]] = {}
        self._waits: dict[str, int] = {}
        self._redis_back_at = 0.0
        self._redis_failing = False
        self._logged_at = -math.inf

    @classmethod
    def of(cls, settings: Settings, client: redis.Redis, engine: Engine) -> Quotas:
        return cls(
            client=client,
            count_open_calls=open_calls_counter(engine),
            submit_rate=parse_rate(settings.tenant_submit_rate),
            max_open_calls=settings.tenant_max_open_calls,
            max_waits=settings.tenant_max_waits,
            redeliveries_per_min=settings.tenant_redeliveries_per_min,
        )

    # --- submissions ----------------------------------------------------------------------

    def prepare(self, tenant_id: str) -> None:
        """Count the tenant's calls not finished now if the count is old: called before a
        submission opens its session, so `admit_calls` then needs no connection of its own
        while the submission holds one (two per request could leave a full pool waiting
        on itself)."""
        self._open_calls(tenant_id)

    def admit_calls(self, tenant_id: str, n: int) -> None:
        """Admit `n` new calls of the tenant, or raise a 429. Call `prepare` first: this
        counts in the database only when nothing was counted before, and uses an old count
        as it is."""
        expires, count = self._open_calls(tenant_id, refresh=False)
        cap = self._max_open_calls
        if count + n > cap:
            raise too_many(
                "open_calls",
                "calls",
                f"this tenant has {count if count <= cap else f'more than {cap}'} calls not "
                f"finished; {n} more would pass {cap} (PASSTHRU_TENANT_MAX_OPEN_CALLS)",
                OPEN_CALLS_RETRY_S,
            )
        self._admit_rate(tenant_id, n)
        with self._lock:  # add to the count as it is now (other threads admit too)
            expires, count = self._open.get(tenant_id, (expires, count))
            self._open[tenant_id] = (expires, count + n)

    def _open_calls(self, tenant_id: str, *, refresh: bool = True) -> tuple[float, int]:
        """(read again after, count): the cached count, or a fresh one when it is old (and
        `refresh`). One thread per tenant counts at a time; the others wait for its count
        instead of sending the same query."""
        cached = self._cached_open(tenant_id, stale_ok=not refresh)
        if cached is not None:
            return cached
        with self._lock:
            counting = self._counting.setdefault(tenant_id, threading.Lock())
        with counting:
            cached = self._cached_open(tenant_id, stale_ok=not refresh)
            if cached is not None:
                return cached  # another thread counted while this one waited
            with self._lock:
                failure = self._failures.get(tenant_id)
            if failure is not None and failure[0] > self._monotonic():
                raise failure[1]  # the count that failed while this one waited
            try:
                count = self._count_open_calls(tenant_id, self._max_open_calls)
            except (OperationalError, PoolTimeout) as exc:
                error = database_unavailable(exc)
                with self._lock:
                    self._failures[tenant_id] = (self._monotonic() + FAILURE_TTL_S, error)
                raise error from None
            cached = (self._monotonic() + OPEN_CALLS_TTL_S, count)
            with self._lock:
                self._open[tenant_id] = cached
                self._failures.pop(tenant_id, None)
            return cached

    def _cached_open(self, tenant_id: str, stale_ok: bool) -> tuple[float, int] | None:
        with self._lock:
            cached = self._open.get(tenant_id)
        if cached is None or (cached[0] <= self._monotonic() and not stale_ok):
            return None
        return cached

    def _admit_rate(self, tenant_id: str, n: int) -> None:
        rate = self._submit_rate
        if rate is None:
            return
        setting = f"PASSTHRU_TENANT_SUBMIT_RATE: {rate.text}"
        if n > rate.burst:
            raise too_many(
                "submit_rate",
                "calls",
                f"{n} calls at once is more than this tenant's burst ({setting}); split them",
                rate.burst * rate.interval_ms / 1000,
            )
        wait_ms = self._take(f"{QUOTA_PREFIX}:submit:{tenant_id}", rate, n)
        if wait_ms:
            raise too_many(
                "submit_rate",
                "calls",
                f"this tenant submits calls faster than it may ({setting})",
                wait_ms / 1000,
            )

    # --- redeliveries ---------------------------------------------------------------------

    def admit_redelivery(self, tenant_id: str) -> None:
        rate = self._redeliver_rate
        wait_ms = self._take(f"{QUOTA_PREFIX}:redeliver:{tenant_id}", rate, 1)
        if wait_ms:
            raise too_many(
                "redeliveries",
                "redeliveries",
                f"more redeliveries than this tenant may ask for "
                f"(PASSTHRU_TENANT_REDELIVERIES_PER_MIN: {rate.burst} per minute)",
                wait_ms / 1000,
            )

    # --- long polls -----------------------------------------------------------------------

    @contextmanager
    def waiting(self, tenant_id: str, field: str) -> Iterator[None]:
        """Hold one of the tenant's long polls in this process while the block runs."""
        held = self._hold_wait(tenant_id)
        if held is not None:
            raise too_many(
                "waits",
                field,
                f"this tenant already waits on {held} calls in this API process "
                f"(PASSTHRU_TENANT_MAX_WAITS: {self._max_waits}); poll without waiting, "
                "or wait for fewer at once",
                WAITS_RETRY_S,
            )
        try:
            yield
        finally:
            self._release_wait(tenant_id)

    @contextmanager
    def waiting_if_free(self, tenant_id: str) -> Iterator[bool]:
        """Hold one of the tenant's long polls while the block runs if one is free (True),
        else hold nothing (False): for a wait the caller did not ask for, which is then
        skipped rather than refused."""
        if self._hold_wait(tenant_id) is not None:
            yield False
            return
        try:
            yield True
        finally:
            self._release_wait(tenant_id)

    def _hold_wait(self, tenant_id: str) -> int | None:
        """Take one of the tenant's long polls (None); when none is free, take nothing and
        return how many the tenant holds."""
        with self._lock:
            held = self._waits.get(tenant_id, 0)
            if held >= self._max_waits:
                return held
            self._waits[tenant_id] = held + 1
            return None

    def _release_wait(self, tenant_id: str) -> None:
        with self._lock:
            left = self._waits[tenant_id] - 1
            if left:
                self._waits[tenant_id] = left
            else:
                del self._waits[tenant_id]

    # --- Redis, failing open --------------------------------------------------------------

    def _take(self, key: str, rate: Rate, n: int) -> int:
        now = self._monotonic()
        with self._lock:
            if now < self._redis_back_at:
                return 0
            if self._redis_failing:  # one probe at a time while Redis fails: the rest admit
                self._redis_back_at = now + REDIS_BACKOFF_S
        try:
            wait_ms = self._rates.take(key, rate, n)
        except redis.RedisError as exc:
            with self._lock:
                self._redis_failing = True
                self._redis_back_at = now + REDIS_BACKOFF_S
                quiet = now - self._logged_at < LOG_EVERY_S
                if not quiet:
                    self._logged_at = now
            if not quiet:
                log.warning(
                    "tenant bounds: Redis did not answer (%s); admitting without the "
                    "submission and redelivery rates for now",
                    type(exc).__name__,
                )
            return 0
        with self._lock:
            self._redis_failing = False
        return wait_ms
