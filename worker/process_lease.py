"""A worker process's hold on its calls: its heartbeat (worker/liveness.py) on a database
connection of its own, so a pool busy with calls never delays it, its record of the
messages it holds (worker/held.py), and giving both up at a clean stop. Celery's worker
process and its interactive lane's process (worker/lane_process.py) each have one."""

from __future__ import annotations

import logging

import redis
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from models.db.engine import create_db_engine, utcnow
from models.settings import get_settings
from worker.held import RedisHolds
from worker.liveness import Heartbeat, leave, mark_dead, renew, this_process

log = logging.getLogger("passthru")


class ProcessLease:
    def __init__(self) -> None:
        self._heartbeat: Heartbeat | None = None
        self._holds: RedisHolds | None = None
        self._engine: Engine | None = None

    def start(self) -> None:
        """The first beat happens here: nothing is claimed before the process has its row."""
        settings = get_settings()
        engine = create_db_engine(settings.database_url, pool_size=1)
        me = this_process()
        self._heartbeat = Heartbeat(
            lambda: renew(engine, me, utcnow(), settings.lease_s), settings.heartbeat_every_s
        )
        self._heartbeat.start()
        self._holds = RedisHolds(redis.Redis.from_url(settings.redis_url, socket_timeout=5))
        self._engine = engine

    def hold(self, message_id: str, call_ids: list[str]) -> None:
        if self._holds is not None:
            self._holds.hold(this_process().id, message_id, call_ids)

    def release(self, message_id: str) -> None:
        if self._holds is not None:
            self._holds.release(this_process().id, message_id)

    def mark_dead(self, worker_id: str) -> None:
        """Another process, known to have died (this one's lane): its lease ends now."""
        if self._engine is not None:
            mark_dead(self._engine, worker_id, utcnow())

    def end(self) -> None:
        """A clean stop: the sweeper takes back at once whatever is still running."""
        if self._heartbeat is None or self._engine is None:
            return
        self._heartbeat.stop()
        try:
            leave(self._engine, this_process())
        except SQLAlchemyError as exc:
            log.warning(
                "the process's lease was not given up (%s); it runs out in PASSTHRU_LEASE_S",
                type(exc).__name__,
            )
