"""The Celery application (`celery -A worker.app worker`).

Settings worth defending:
- acks_late + reject_on_worker_lost: a message is acknowledged only after the call is
  recorded; a worker that dies hands its messages back. The database claim makes a second
  delivery a no-op, so at-least-once delivery gives exactly-once execution.
- prefetch multiplier 1 on top of a threads pool: each thread holds at most one message
  in reserve, so a slow worker does not hoard calls other workers could run.
- no result backend: results live in the database.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, Protocol

from celery import Celery, Task
from celery.signals import (
    celeryd_after_setup,
    setup_logging,
    task_postrun,
    task_received,
    worker_init,
    worker_ready,
    worker_shutdown,
)
from celery.worker.request import Request

from models.broker import message_settings
from models.gc import freeze_startup_objects
from models.keys import (
    BULK_QUEUES,
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    QUEUE_WEBHOOKS,
    TASK_EXECUTE_CALLS,
    TASK_PURGE,
    TASK_SWEEP,
    TASK_TAKE_BULK,
)
from models.logs import configure_logging
from models.settings import get_settings
from models.startup import config_errors_exit, startup_settings
from worker.budget import bulk_budget
from worker.bulk_turns import bulk_turns
from worker.lane_process import LANE_SWITCH_INTERVAL_S, start_consumer
from worker.lane_supervisor import DOWN_LIMIT_S, LaneSupervisor, lane_command
from worker.log_filters import quiet_upkeep
from worker.priority import run_in_background
from worker.process_lease import ProcessLease
from worker.waiting_work import waiting_work

# How often beat deletes calls past PASSTHRU_RETENTION_DAYS.
PURGE_EVERY_S = 600.0


def create_celery() -> Celery:
    with config_errors_exit():
        settings = startup_settings()
    app = Celery("passthru", broker=settings.redis_url, include=["worker.tasks"])
    app.conf.update(
        message_settings(),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep": {"task": TASK_SWEEP, "schedule": settings.sweep_every_s},
            "purge": {"task": TASK_PURGE, "schedule": PURGE_EVERY_S},
        },
        worker_send_task_events=True,
    )
    return app


app = create_celery()


@setup_logging.connect
def _logging(**_: object) -> None:
    """passthru's log format for Celery's lines too (connecting here stops Celery from
    configuring logging its own way)."""
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    logging.getLogger("celery").setLevel(logging.INFO)
    for name in ("celery.worker.strategy", "celery.app.trace"):
        logging.getLogger(name).addFilter(quiet_upkeep)


@celeryd_after_setup.connect
def _consume_every_bulk_shard(instance: Any, **_: object) -> None:
    """`-Q passthru.bulk` means the whole bulk lane: every one of its shards. And the
    budget's share of the threads is of the pool's real size (--concurrency)."""
    queues = instance.app.amqp.queues
    if QUEUE_BULK in queues.consume_from:
        for shard in BULK_QUEUES:
            queues.select_add(shard)
    if isinstance(instance.concurrency, int) and instance.concurrency > 0:
        bulk_budget().use_threads(instance.concurrency)


@worker_init.connect
def _fail_fast(**_: object) -> None:
    """Build the runtime at start, so a bad setting stops the worker with a clear message,
    and take the process's lease before it consumes anything."""
    from worker.runtime import get_runtime

    # The sender's loop and pool start now, so the first calls' slots are kept to the ms;
    # its loop (bulk requests, webhook attempts) runs behind the interactive lane.
    with config_errors_exit():
        sender = get_runtime().sender
    # The process's one of each, made before any thread asks (a cache is not a lock).
    bulk_turns()
    waiting_work()
    sender.start()
    sender.loop.call_soon_threadsafe(run_in_background)
    _lease.start()
    freeze_startup_objects()


_lease = ProcessLease()


@task_received.connect
def _hold(request: Request, **_: object) -> None:
    """Record the calls of each message this process takes, until it has run them."""
    if request.name == TASK_EXECUTE_CALLS and request.args:
        _lease.hold(request.id, list(request.args[0]))


@task_postrun.connect
def _release(task_id: str, task: Task[Any, Any], **_: object) -> None:
    """The message's calls are run (or left to the sweeper): a bulk message's too, which
    carried no ids and held the chunk it took (worker/bulk_turns.py), unless its take got no
    answer (the process's next take puts that chunk back in turn)."""
    if task.name == TASK_EXECUTE_CALLS or (
        task.name == TASK_TAKE_BULK and not bulk_turns().keeps(task_id)
    ):
        _lease.release(task_id)


@worker_init.connect
def _launch_lane_process(**_: object) -> None:
    """A worker that consumes the interactive queue also takes the interactive calls due
    now off their Redis list (worker/lane.py), with as many threads as Celery's pool, in a
    process of its own (worker/lane_process.py): started here, so that it boots while
    Celery starts its consumer."""
    if QUEUE_INTERACTIVE in app.amqp.queues.consume_from and get_settings().lane_process:
        supervisor = LaneSupervisor(lane_command(os.getpid()), on_lost=_lease.mark_dead)
        supervisor.launch()
        _lanes.append(supervisor)


@worker_ready.connect
def _start_interactive_lane(**_: object) -> None:
    """Wait until the lane's process is ready (the heartbeat, connected last, then says the
    worker is). With PASSTHRU_LANE_PROCESS=false the lane's threads start in this process
    instead."""
    if QUEUE_INTERACTIVE not in app.amqp.queues.consume_from:
        return
    if get_settings().lane_process:
        for supervisor in _supervisors():  # launched at worker_init
            supervisor.wait_ready()
        return
    # Python hands its lock between threads every 5 ms by default: a lane thread waking
    # for its next step would wait that long behind bulk work each time.
    sys.setswitchinterval(LANE_SWITCH_INTERVAL_S)
    _lanes.append(start_consumer())


class _Lane(Protocol):
    def stop(self, timeout_s: float) -> bool: ...


_lanes: list[_Lane] = []


@worker_ready.connect
def _serve_metrics(**_: object) -> None:
    """After the lane's start (connected after it): its counts are added to this process's."""
    port = get_settings().worker_metrics_port
    if not port:
        return
    from prometheus_client import CollectorRegistry, start_http_server

    from worker.lane_metrics import WithLane
    from worker.metrics import REGISTRY

    served = CollectorRegistry()
    served.register(WithLane(REGISTRY, _lane_metrics_port))
    try:
        start_http_server(port, registry=served)
    except OSError as exc:
        logging.getLogger("passthru").warning(
            "worker metrics: port %d is taken (%s); set PASSTHRU_WORKER_METRICS_PORT to a "
            "free one, or 0",
            port,
            exc,
        )


def _supervisors() -> list[LaneSupervisor]:
    return [lane for lane in _lanes if isinstance(lane, LaneSupervisor)]


def _lane_metrics_port() -> int | None:
    for supervisor in _supervisors():
        return supervisor.metrics_port
    return None


HEARTBEAT_EVERY_S = 10.0


@worker_ready.connect
def _start_heartbeat(**_: object) -> None:
    """Touch the heartbeat file while the worker's main process is alive and its pool has
    started (`passthru worker-alive` reads it). Connected last: the other handlers (the
    lane's process ready, the metrics served) have run when the file first appears, and
    `passthru dev` reads it as the worker being ready."""
    path = get_settings().heartbeat_file

    def beat() -> None:
        while True:
            if all(supervisor.healthy() for supervisor in _supervisors()):
                try:
                    path.touch()
                except OSError as exc:
                    logging.getLogger("passthru").warning("heartbeat %s: %s", path, exc)
            else:
                logging.getLogger("passthru").error(
                    "interactive lane: its process has kept ending, or not become ready, "
                    "for over %g s; the heartbeat stops, so `passthru worker-alive` fails "
                    "and this worker is replaced",
                    DOWN_LIMIT_S,
                )
            time.sleep(HEARTBEAT_EVERY_S)

    threading.Thread(target=beat, name="passthru-heartbeat", daemon=True).start()


@worker_ready.connect
def _take_webhook_deliveries(**_: object) -> None:
    """A worker that consumes the webhooks' queue also takes the deliveries due now off
    their tenants' lists, whenever its sender has room (worker/webhooks/puller.py)."""
    if QUEUE_WEBHOOKS in app.amqp.queues.consume_from:
        from worker.runtime import get_puller

        get_puller().start()


@worker_shutdown.connect
def _stop_interactive_lane(**_: object) -> None:
    """A warm shutdown takes no more interactive calls and waits for those running (each
    ends by its attempt's deadline)."""
    for consumer in _lanes:
        if not consumer.stop(get_settings().attempt_deadline_s):
            logging.getLogger("passthru").warning(
                "interactive calls still running at shutdown; the sweeper takes them back"
            )


@worker_shutdown.connect
def _finish_webhook_attempts(**_: object) -> None:
    """Webhook attempts run on the event loop, not as tasks: a warm shutdown waits for the
    ones in flight to be recorded (each ends within PASSTHRU_WEBHOOK_TIMEOUT_S)."""
    from worker.runtime import get_puller, get_webhook_runtime
    from worker.webhooks.puller import LOOK_EVERY_S

    if get_puller.cache_info().currsize and not get_puller().stop(LOOK_EVERY_S + 5):
        logging.getLogger("passthru").warning(
            "webhook deliveries still being taken at shutdown: the one taken is sent again "
            "by the sweeper (after its lease, or within an hour)"
        )
    if get_webhook_runtime.cache_info().currsize == 0:
        return  # this process never delivered
    poster = get_webhook_runtime().poster
    drain = getattr(poster, "drain", None)
    if drain is not None and not drain(get_settings().webhook_timeout_s + 5):
        logging.getLogger("passthru").warning(
            "webhook attempts still in flight at shutdown; the sweeper takes them back"
        )


@worker_shutdown.connect
def _give_up_lease(**_: object) -> None:
    """Last: once everything this process ran is recorded, it holds nothing any more."""
    _lease.end()
