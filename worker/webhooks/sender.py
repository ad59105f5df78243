"""Webhook attempts on the worker's event loop, under their own budget.

A receiver is as untrusted as an upstream: it may answer slowly, drip one byte at a time,
or answer with a compression bomb. So an attempt asks for `Accept-Encoding: identity`,
reads at most ANSWER_READ_BYTES of the answer (only its status matters), and runs under
one total deadline covering connect, send and answer (PASSTHRU_WEBHOOK_TIMEOUT_S), not a
per-read timeout. Attempts run on the event loop, at most PASSTHRU_WEBHOOK_CONCURRENCY at
once per process, never on the threads that run calls: the Celery task that hands them
over returns at once; each attempt is prepared (its body built and signed) once it has a
slot, and recorded when it ends, on a small executor of its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import httpx

from worker.net.egress import LOOKUP_OWNER
from worker.net.transport import describe_failure

log = logging.getLogger("passthru.webhooks")

# Bytes of a receiver's answer read at most: enough to end it politely, never a bomb.
ANSWER_READ_BYTES = 1024
# Attempts handed over but not yet recorded, per process, as a multiple of the concurrency:
# beyond it, deliveries wait on their tenants' lists (models/webhooks/due.py) until one ends.
PENDING_PER_SLOT = 8
# One tenant's share of those: a quarter, so that a tenant whose receiver never answers puts
# at most two rounds of attempts (two deadlines) ahead of another tenant's, and four such
# tenants are needed to fill a process.
PENDING_PER_TENANT_SLOT = 2
# The longest error text kept for an attempt (the column's size).
ERROR_CHARS = 200


@dataclass(frozen=True)
class Prepared:
    """One signed attempt, ready to send."""

    delivery_id: str
    url: str
    body: bytes
    headers: dict[str, str]
    tenant_id: str | None = None  # whose names its lookup resolves (LOOKUP_OWNER)


@dataclass(frozen=True)
class Sent:
    """What one attempt got: a status, or why there was none."""

    status_code: int | None
    error: str | None
    duration_ms: int


async def attempt(client: httpx.AsyncClient, prepared: Prepared, timeout_s: float) -> Sent:
    """POST once under a total deadline; a status that arrived in time counts even if the
    rest of the answer does not."""
    started = time.monotonic()
    code: int | None = None

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    LOOKUP_OWNER.set(prepared.tenant_id)  # (the task's own context: this attempt's)
    try:
        async with asyncio.timeout(timeout_s):
            request = client.build_request(
                "POST", prepared.url, content=prepared.body, headers=prepared.headers
            )
            response = await client.send(request, stream=True)
            code = response.status_code
            try:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= ANSWER_READ_BYTES:
                        break
            finally:
                await response.aclose()
    except TimeoutError:
        if code is None:
            return Sent(None, f"no answer within {timeout_s:g} s", took())
    except Exception as exc:
        if code is None:
            kind, _, message = describe_failure(exc, sent=False)
            return Sent(None, f"{kind}: {message}"[:ERROR_CHARS], took())
    return Sent(code, None, took())


Prepare = Callable[[], Prepared]
# Records how an attempt ended: what it got, or the exception that stopped `prepare`.
Done = Callable[["Sent | Exception"], object]


@dataclass(frozen=True)
class Vacancy:
    """A sender's room, as it was at one moment."""

    any: bool  # for one more attempt, of a tenant not in `full`
    full: frozenset[str]  # the tenants with as many attempts handed over as they may have
    ended: int  # attempts ended so far (to wait for the next one: `wait_for_room`)


class Poster(Protocol):
    def room(self, tenant_id: str) -> int:
        """How many more attempts of `tenant_id` may be handed over now."""
        ...

    def vacancy(self) -> Vacancy:
        """The sender's room now."""
        ...

    def wait_for_room(self, ended: int, timeout_s: float) -> None:
        """Return once more than `ended` attempts have ended, or after `timeout_s`."""
        ...

    def post(self, delivery_id: str, tenant_id: str, prepare: Prepare, done: Done) -> None:
        """When a slot is free: `prepare` the attempt (build and sign its request, on a
        thread), send it, and have `done` record how it ended."""
        ...


class LoopPoster:
    """Attempts on an event loop (the sender's), at most `concurrency` at once, in the order
    handed over; at most PENDING_PER_SLOT per slot waiting or running, of which one tenant
    holds at most PENDING_PER_TENANT_SLOT per slot."""

    def __init__(
        self,
        loop: Callable[[], asyncio.AbstractEventLoop],
        make_client: Callable[[], httpx.AsyncClient],
        *,
        concurrency: int,
        timeout_s: float,
    ) -> None:
        self._loop = loop
        self._make_client = make_client
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._max_pending = concurrency * PENDING_PER_SLOT
        self._max_pending_of_tenant = concurrency * PENDING_PER_TENANT_SLOT
        self._pending = 0
        self._pending_of: dict[str, int] = {}  # tenants with attempts pending only
        self._ended = 0
        self._lock = threading.Lock()
        self._attempt_ended = threading.Condition(self._lock)
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._recorder = ThreadPoolExecutor(2, thread_name_prefix="passthru-webhook-record")

    def room(self, tenant_id: str) -> int:
        with self._lock:
            return min(
                self._max_pending - self._pending,
                self._max_pending_of_tenant - self._pending_of.get(tenant_id, 0),
            )

    def vacancy(self) -> Vacancy:
        with self._lock:
            cap = self._max_pending_of_tenant
            return Vacancy(
                any=self._pending < self._max_pending,
                full=frozenset(t for t, n in self._pending_of.items() if n >= cap),
                ended=self._ended,
            )

    def wait_for_room(self, ended: int, timeout_s: float) -> None:
        with self._lock:
            self._attempt_ended.wait_for(lambda: self._ended > ended, timeout_s)

    def post(self, delivery_id: str, tenant_id: str, prepare: Prepare, done: Done) -> None:
        with self._lock:
            self._pending += 1
            self._pending_of[tenant_id] = self._pending_of.get(tenant_id, 0) + 1
        try:
            run = self._run(delivery_id, tenant_id, prepare, done)
            asyncio.run_coroutine_threadsafe(run, self._loop())
        except BaseException:
            self._finished(tenant_id)
            raise

    async def _run(self, delivery_id: str, tenant_id: str, prepare: Prepare, done: Done) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._client is None or self._slots is None:  # made on the loop, once
                self._client = self._make_client()
                self._slots = asyncio.Semaphore(self._concurrency)
            outcome: Sent | Exception
            async with self._slots:
                try:
                    prepared = await loop.run_in_executor(self._recorder, prepare)
                except Exception as exc:
                    outcome = exc
                else:
                    outcome = await attempt(self._client, prepared, self._timeout_s)
            await loop.run_in_executor(self._recorder, done, outcome)
        except Exception:
            # The delivery stays `delivering` until its lease ends; the sweeper takes it back.
            log.exception("webhook %s: the attempt could not be recorded", delivery_id)
        finally:
            self._finished(tenant_id)

    def _finished(self, tenant_id: str) -> None:
        with self._lock:
            self._pending -= 1
            left = self._pending_of.pop(tenant_id) - 1
            if left:
                self._pending_of[tenant_id] = left
            self._ended += 1
            self._attempt_ended.notify_all()  # `drain`, and `wait_for_room`

    def drain(self, timeout_s: float) -> bool:
        """Wait for the attempts in flight to be recorded (a warm shutdown); False if some
        are still running after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._attempt_ended.wait(left)
        return True


class InlinePoster:
    """Each attempt at once, on the calling thread, in an event loop of its own (tests and
    tools)."""

    def __init__(self, make_client: Callable[[], httpx.AsyncClient], timeout_s: float) -> None:
        self._make_client = make_client
        self._timeout_s = timeout_s

    def room(self, tenant_id: str) -> int:
        return 1_000_000

    def vacancy(self) -> Vacancy:
        return Vacancy(any=True, full=frozenset(), ended=0)

    def wait_for_room(self, ended: int, timeout_s: float) -> None:
        return

    def post(self, delivery_id: str, tenant_id: str, prepare: Prepare, done: Done) -> None:
        async def once(prepared: Prepared) -> Sent:
            async with self._make_client() as client:
                return await attempt(client, prepared, self._timeout_s)

        try:
            prepared = prepare()
        except Exception as exc:
            done(exc)
            return
        done(asyncio.run(once(prepared)))
