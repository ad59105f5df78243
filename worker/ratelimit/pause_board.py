"""This process's view of the pauses upstreams asked for, so a call under no rate limit does not
ask Redis whether its key is paused.

Every call books its slot before it goes (worker/ratelimit/admission.py). For a call whose
app declares no limit (most apps of the catalog) and with no tenant cap, booking only reads
its pause key: a Redis round trip per message, which for a waiting call is about a tenth of
its lane's CPU. Pauses are rare and announced: each one set or made longer is published on
CHANNEL_PAUSES (models/ratelimit/store.py). A board subscribes to that channel, then reads
the pauses already set, and from then on knows every pause; `clear` says a key may go
without asking. Until the board is live, and whenever its subscription breaks, nothing is
clear: every call asks Redis, as before.

A pause announced by another process reaches the board within a Redis round trip; a call
admitted meanwhile goes, as one already on the wire would. Pause ends are on Redis' clock:
a key is clear only once its pause ended SKEW_MS ago on this process's clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import redis

from models.keys import CHANNEL_PAUSES
from models.ratelimit.rules import KEY_PREFIX, Booking, book
from models.ratelimit.store import Ask, Limiter

log = logging.getLogger("passthru.worker")

# How far this process's clock may be behind Redis' before a pause would seem over early.
SKEW_MS = 2_000
# After the subscription broke, the board tries again after this long.
RETRY_S = 1.0
# A pause key of the limiter's (models/ratelimit/rules.py: pause_key).
PAUSE_KEYS = f"{KEY_PREFIX}:pause:*"


class PauseBoard:
    def __init__(
        self,
        connect: Callable[[], redis.Redis],
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._connect = connect
        self._clock_ms = clock_ms
        self._until: dict[str, int] = {}  # pause key -> when it ends (Redis' clock, ms)
        self._live = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="passthru-pauses", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def live(self) -> bool:
        return self._live

    def clear(self, key: str) -> bool:
        """Whether `key` is known to be under no pause now (False while not live)."""
        if not self._live:
            return False
        with self._lock:
            until = self._until.get(key)
            if until is None:
                return True
            if until + SKEW_MS < self._clock_ms():
                del self._until[key]
                return True
        return False

    def paused(self, key: str, until_ms: int) -> None:
        with self._lock:
            self._until[key] = max(until_ms, self._until.get(key, 0))

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._follow()
            except (redis.RedisError, OSError, ValueError) as exc:
                log.warning("pause board: %s; every call asks Redis meanwhile", exc)
            self._live = False
            self._stopping.wait(RETRY_S)

    def _follow(self) -> None:
        """Subscribe, then read the pauses already set, then follow the channel."""
        client = self._connect()
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(CHANNEL_PAUSES)
            # Until Redis confirms the subscription, an announcement could be missed.
            confirmed = None
            while confirmed is None or confirmed["type"] != "subscribe":
                if self._stopping.is_set():
                    return
                confirmed = pubsub.get_message(timeout=1.0)
            for key in client.scan_iter(match=PAUSE_KEYS, count=1000):
                value = client.get(key)
                if value is not None:
                    self.paused(key.decode(), int(value))
            self._live = True
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "message":
                    key, until = message["data"].decode().rsplit(" ", 1)
                    self.paused(key, int(until))
        finally:
            self._live = False
            pubsub.close()
            client.close()


class BoardedLimiter:
    """A Limiter that books locally the calls under no rule whose pause key the board knows
    to be clear, and asks `inner` for the rest, in one round trip as before."""

    def __init__(self, inner: Limiter, board: PauseBoard) -> None:
        self.inner = inner
        self.board = board

    def book_many(
        self, asks: Sequence[Ask], *, near_ms: int, horizon_ms: int, now_ms: int | None = None
    ) -> list[Booking]:
        local = [not ask.rules and self.board.clear(ask.pause_key) for ask in asks]
        asked = [ask for ask, here in zip(asks, local, strict=True) if not here]
        window = {"near_ms": near_ms, "horizon_ms": horizon_ms}
        answers = iter(self.inner.book_many(asked, now_ms=now_ms, **window) if asked else [])
        # Only `wait_ms` is read of a booking: the local clock serves as well as Redis'.
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return [
            book([], [], now_ms=now, paused_until_ms=None, **window) if here else next(answers)
            for here in local
        ]

    def pause(self, key: str, for_ms: int, *, now_ms: int | None = None) -> int:
        until = self.inner.pause(key, for_ms, now_ms=now_ms)
        self.board.paused(key, until)  # this process knows at once
        return until

    def read(self, keys: Sequence[str]) -> tuple[int, list[int | None]]:
        return self.inner.read(keys)
