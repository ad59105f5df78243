"""Worker processes prove they are alive: each renews one row of `worker_process` every
fifth of PASSTHRU_LEASE_S, and the calls it claimed (`function_call.claimed_by`) are its
own while that row is current. One UPDATE per process, whatever the number of calls in
flight. When the renewals stop (the process died, or lost its database for longer than
the lease), the sweeper finds the row expired and takes the calls back.

Hosts' clocks must agree to well within the lease (NTP): a row's expiry is written with
the worker's clock and read with the sweeper's.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import Engine, bindparam, delete, insert, select, update

from models.db.engine import UTCDateTime, read_connection
from models.db.tables import WorkerProcess

log = logging.getLogger("passthru.worker")

_workers = WorkerProcess.__table__  # type: ignore[attr-defined]
_RENEW = (
    update(_workers)
    .where(_workers.c.id == bindparam("w_id"))
    .values(expires_at=bindparam("expires_at", type_=UTCDateTime()))
)
# A renewal that fails is logged at most this often.
WARN_EVERY_S = 30.0


@dataclass(frozen=True, slots=True)
class Identity:
    """One worker process: its host, its pid, and a random part, so a pid reused after a
    restart is never taken for the process that died."""

    id: str
    host: str
    pid: int

    @staticmethod
    def new() -> Identity:
        host, pid = socket.gethostname()[:200], os.getpid()
        return Identity(f"{host}:{pid}:{secrets.token_hex(3)}", host, pid)


@lru_cache(maxsize=1)
def this_process() -> Identity:
    return Identity.new()


def renew(engine: Engine, me: Identity, now: datetime, lease_s: float) -> None:
    """Keep this process's calls for `lease_s` more (its row is made if it has none: the
    first beat, or after the sweeper took the process for dead)."""
    expires_at = now + timedelta(seconds=lease_s)
    with engine.begin() as conn:
        if conn.execute(_RENEW, {"w_id": me.id, "expires_at": expires_at}).rowcount:
            return
        conn.execute(
            insert(_workers).values(
                id=me.id, host=me.host, pid=me.pid, started_at=now, expires_at=expires_at
            )
        )


def leave(engine: Engine, me: Identity) -> None:
    """A clean stop: the process holds nothing any more."""
    with engine.begin() as conn:
        conn.execute(delete(_workers).where(_workers.c.id == me.id))


def expired(engine: Engine, now: datetime, limit: int) -> list[str]:
    """Processes whose lease ran out: dead, or cut off from the database for that long."""
    with read_connection(engine) as conn:
        rows = conn.execute(select(_workers.c.id).where(_workers.c.expires_at < now).limit(limit))
        return [row.id for row in rows]


def mark_dead(engine: Engine, worker_id: str, now: datetime) -> None:
    """A process known to be dead (its parent saw it end): its lease ends now, so the next
    sweep takes its calls back instead of waiting for the lease to run out."""
    with engine.begin() as conn:
        conn.execute(_RENEW, {"w_id": worker_id, "expires_at": now - timedelta(seconds=1)})


def forget(engine: Engine, worker_ids: Sequence[str], now: datetime) -> None:
    """Remove dead processes once what they held is published again (a process that beat
    again meanwhile keeps its row)."""
    if not worker_ids:
        return
    with engine.begin() as conn:
        conn.execute(
            delete(_workers).where(_workers.c.id.in_(worker_ids), _workers.c.expires_at < now)
        )


class Heartbeat:
    """The process's heartbeat thread: renews the lease every `every_s`. The first beat
    happens in start(), so no call is claimed before the process has its row."""

    def __init__(self, beat: Callable[[], None], every_s: float) -> None:
        self._beat = beat
        self._every_s = every_s
        self._stopping = threading.Event()
        self._warned_at = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._once()
        self._thread = threading.Thread(target=self._run, name="passthru-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self._every_s + 5)

    def _run(self) -> None:
        while not self._stopping.wait(self._every_s):
            self._once()

    def _once(self) -> None:
        try:
            self._beat()
        except Exception as exc:  # the database, or a bug: the thread must beat on either way
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning(
                    "heartbeat: the lease could not be renewed (%s); if this lasts longer "
                    "than PASSTHRU_LEASE_S, the sweeper takes this process's calls back",
                    type(exc).__name__,
                )
