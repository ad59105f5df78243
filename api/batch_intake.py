"""Where a batch is taken in: each call validated, the accepted ones admitted against the
tenant's bounds, written and published (`bulk_submission.submit_batch`).

A batch of 1,000 calls keeps an interpreter busy for tens of milliseconds. In the API's own
process that is the interpreter every waiting caller's request needs as well: calls sent
while batches arrived waited behind them (docs/performance.md, "Batch intake in a process of
its own"). With PASSTHRU_BATCH_INTAKE_PROCESS (on by default) the API hands each batch to
`BatchProcess`, one process of its own started with the API and stopped with it, so the
operating system runs batch intake beside the API's interpreter instead of inside it.
Without it, `BatchThreads` takes batches in the API's thread pool.

Either way the same `BatchTaker` does the work and the API process counts what it answers
(calls accepted and rejected, requests refused by a bound), so /metrics is the same.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.bulk_submission import handed_over, submit_batch, written_calls
from api.errors import database_unavailable, refused_by_database
from api.prometheus import CALLS_ACCEPTED, CALLS_REJECTED, REQUESTS_REFUSED
from api.quotas import Quotas, Refused
from api.redis_rates import quotas_client
from api.schemas.batches import BatchRejected
from api.submission import publish_or_mark
from api.validation import CallLimits
from models.broker import Publisher, sending_publisher
from models.catalog.apps import Catalog, catalog_for
from models.db.engine import engine_for
from models.db.ids import new_id
from models.db.tables import Tenant
from models.errors import ApiError, ErrorDetail
from models.keys import QUEUE_BULK
from models.logs import configure_logging
from models.settings import Settings

log = logging.getLogger("passthru.api")

# How long a client is told to wait before sending a batch again after the intake process
# died under it (a new one starts at once).
RESTART_RETRY_S = 1


@dataclass(frozen=True)
class TakenIn:
    """A batch as taken in: its id, the (index, call id) of each accepted call, and each
    rejected one."""

    batch_id: str
    accepted: list[tuple[int, str]]
    rejected: list[BatchRejected]


@dataclass(frozen=True)
class BatchTaker:
    """What taking a batch in needs, and the doing of it."""

    engine: Engine
    catalog: Catalog
    limits: CallLimits
    quotas: Quotas
    publisher: Publisher

    def take(
        self, tenant: Tenant, items: list[Any], user_id: str | None, batch_id: str | None = None
    ) -> TakenIn:
        self.quotas.prepare(tenant.id)
        batch, accepted, rejected = submit_batch(
            self.engine,
            tenant,
            self.catalog,
            items,
            user_id,
            self.limits,
            partial(self.quotas.admit_calls, tenant.id),
            publisher=self.publisher,
            batch_id=batch_id,
        )
        return TakenIn(batch.id, accepted, rejected)


class BatchIntake(Protocol):
    async def take(self, tenant: Tenant, items: list[Any], user_id: str | None) -> TakenIn: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def counted(taken: TakenIn) -> TakenIn:
    """Count a batch's calls as the API answers them."""
    CALLS_ACCEPTED.labels("bulk").inc(len(taken.accepted))
    for item in taken.rejected:
        CALLS_REJECTED.labels(item.error).inc()
    return taken


@dataclass(frozen=True)
class BatchThreads:
    """Batches taken in by the API's own thread pool."""

    taker: BatchTaker

    async def take(self, tenant: Tenant, items: list[Any], user_id: str | None) -> TakenIn:
        return counted(await run_in_threadpool(self.taker.take, tenant, items, user_id))

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class BatchProcess:
    """Batches taken in by one process of their own, with its own database pool, Redis
    clients and catalog, built from the API's settings. Started by `start` (the API's
    lifespan), or by the first batch. A process found dead when a batch comes (it died
    idle) is replaced before the batch is handed over; one that dies under a batch is
    replaced, and the batch answered by what it left (`left_by_death`)."""

    def __init__(self, settings: Settings, engine: Engine, publisher: Publisher) -> None:
        self._settings = settings
        self._engine = engine  # the API's: to learn what a batch the process died under left
        self._publisher = publisher
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the process now (it takes a second to import and connect), not on the
        first batch. Ctrl-C in a terminal reaches the whole process group, and the API stops
        the process itself once its batch is done, so the process ignores SIGINT. It is
        spawned with SIGINT blocked in this thread (a mask the process inherits, so it cannot
        be interrupted before it ignores SIGINT); blocked, not ignored, here, so that a Ctrl-C
        arriving meanwhile still reaches the API (by another thread, or once unblocked)."""
        pool = self._ensure_pool()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pool.submit(_ready)  # spawns it
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def _ensure_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    # Not forked: the API's threads, event loop and connections stay behind.
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_child,
                    initargs=(self._settings,),
                )
            return self._pool

    async def take(self, tenant: Tenant, items: list[Any], user_id: str | None) -> TakenIn:
        batch_id = new_id("bt")  # chosen here, to find the batch if the process dies
        pool = self._ensure_pool()
        try:
            try:
                pool, taken = self._submit(pool, _take, tenant, items, user_id, batch_id)
                return counted(await asyncio.wrap_future(taken))
            except RecursionError:  # an item too deep to pickle: refused before handing over
                fit = await run_in_threadpool(handed_over, items)
                pool, taken = self._submit(pool, _take, tenant, fit, user_id, batch_id)
                return counted(await asyncio.wrap_future(taken))
        except Refused as exc:
            REQUESTS_REFUSED.labels(exc.bound).inc()
            raise
        except BrokenProcessPool:
            self._replace(pool)
            log.error("the batch intake process died; a new one takes the next batch")
            raise await run_in_threadpool(self.left_by_death, tenant.id, batch_id) from None

    def _submit(
        self, pool: ProcessPoolExecutor, *job: Any
    ) -> tuple[ProcessPoolExecutor, Future[TakenIn]]:
        """`job` handed to the process, and the pool it went to: one found dead (it died
        idle, so nothing of this batch reached it) is replaced first."""
        try:
            return pool, pool.submit(*job)
        except BrokenProcessPool:
            log.error("the batch intake process had died; a new one takes this batch")
            pool = self._replace(pool)
            return pool, pool.submit(*job)

    def left_by_death(self, tenant_id: str, batch_id: str) -> ApiError:
        """What to answer for a batch the process died under. Not written (its one
        transaction never committed): a 503, to send it again. Written: its calls are
        published (again: a call already taken is not run twice) and the answer, a 500,
        names the batch, so that it is not sent again."""
        queued = written_calls(self._engine, batch_id)
        if queued is None:
            return ApiError(
                "unavailable",
                [ErrorDetail("calls", "batch intake restarted; send the batch again")],
                503,
                {"Retry-After": str(RESTART_RETRY_S)},
            )
        if queued:
            tenant_of = dict.fromkeys(queued, tenant_id)
            publish_or_mark(self._engine, self._publisher, queued, QUEUE_BULK, tenant_of)
        return ApiError(
            "batch_interrupted",
            [
                ErrorDetail(
                    "calls",
                    f"the batch was written as {batch_id}, but the process taking it in "
                    f"stopped before answering; GET /batches/{batch_id} shows its calls. "
                    "Do not send it again",
                )
            ],
            500,
        )

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A new process in place of the one that died; its pool."""
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)
        self.start()
        return self._ensure_pool()

    def stop(self) -> None:
        """Let the batch being taken in finish, then stop the process."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


# ---- in the intake process ---------------------------------------------------------------

_taker: BatchTaker | None = None


def _start_child(settings: Settings) -> None:
    """The process's taker, with connections of its own; Ctrl-C ignored (see `start`): a
    SIGINT pending since the process was spawned is dropped, not delivered."""
    global _taker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    configure_logging(settings.log_format, settings.log_level)
    engine = engine_for(settings)
    _taker = BatchTaker(
        engine=engine,
        catalog=catalog_for(settings),
        limits=CallLimits.of(settings),
        quotas=Quotas.of(settings, quotas_client(settings.redis_url), engine),
        publisher=sending_publisher(settings.redis_url),
    )


def _ready() -> bool:
    return _taker is not None


def _take(tenant: Tenant, items: list[Any], user_id: str | None, batch_id: str) -> TakenIn:
    """BatchTaker.take, with what it raises made into what the API answers: an ApiError
    crosses back to the API as it is; a database that is down or refuses a value becomes
    the ApiError the API's own handlers would have made of it (the driver's exceptions are
    not sent between processes)."""
    assert _taker is not None, "the intake process did not start"
    try:
        return _taker.take(tenant, items, user_id, batch_id)
    except ApiError:
        raise
    except (OperationalError, PoolTimeout) as exc:
        raise database_unavailable(exc) from None
    except (DataError, IntegrityError) as exc:
        raise refused_by_database(exc, "a batch") from None
    except Exception:
        log.exception("unexpected error taking a batch in")
        raise RuntimeError("unexpected error taking a batch in; it was logged") from None
