"""The interactive lane in a process of its own (`python -m worker.lane_process`), started
and watched by each worker process that consumes the interactive queue
(worker/lane_supervisor.py).

Threads of one process share Python's lock. While the lane's threads lived in the worker
beside a bulk drain, a waiting caller's call stood behind bulk threads for the lock at
every step, and lowering the bulk threads' priority made that worse: a niced thread holding
the lock runs slower. Here the lane has an interpreter of its own, at the normal priority,
and the kernel gives it a core before the worker's niced bulk threads.

The process is a worker process like any other for the sweeper: a heartbeat of its own
(worker/process_lease.py) holds the calls it claims, and the ids it popped are held on its
own list (worker/held.py), taken back within PASSTHRU_LEASE_S if it dies. It ends within a
second of its parent (it looks at its parent every second), after storing the calls it is
running. It tells its parent, on its standard output, its identity as a worker process, the
port its metrics are on and when it is ready; a parent that sees it die marks that identity
dead at once, so the next sweep takes its calls back without waiting for its lease.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from models.gc import freeze_startup_objects
from models.logs import configure_logging
from models.settings import get_settings
from models.startup import config_errors_exit, startup_settings
from worker.held import lane_key
from worker.lane import InteractiveConsumer
from worker.liveness import this_process
from worker.process_lease import ProcessLease

log = logging.getLogger("passthru.worker")

# How often a thread holding Python's lock is asked to let another run (default 5 ms): a
# lane thread waking for its next step waits at most this long behind another call's.
LANE_SWITCH_INTERVAL_S = 0.0005
# How often the process looks whether its parent is still there.
PARENT_CHECK_S = 1.0
# What the process writes on its standard output for its parent (one line each).
READY_LINE = "ready"
METRICS_PREFIX = "metrics-port "
PROCESS_PREFIX = "process "


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.lane_process")
    parser.add_argument("--parent", type=int, required=True, help="the worker's pid")
    parent = parser.parse_args(argv).parent
    with config_errors_exit():
        settings = startup_settings()
    configure_logging(settings.log_format, settings.log_level)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    sys.setswitchinterval(LANE_SWITCH_INTERVAL_S)

    lease = ProcessLease()
    lease.start()
    _tell_parent(f"{PROCESS_PREFIX}{this_process().id}")
    consumer = start_consumer()
    _serve_metrics()
    freeze_startup_objects()
    _tell_parent(READY_LINE)
    log.debug("interactive lane ready: process %s", this_process().id)

    while not stopping.wait(PARENT_CHECK_S):
        if os.getppid() != parent:
            log.warning("interactive lane: its worker process is gone; stopping")
            break
    if not consumer.stop(get_settings().attempt_deadline_s):
        log.warning("interactive calls still running at shutdown; the sweeper takes them back")
    lease.end()
    return 0


def start_consumer() -> InteractiveConsumer:
    """The lane's threads, running calls through the lane's runtime (its own sender): in
    this process, or in the worker's with PASSTHRU_LANE_PROCESS=false."""
    from worker.calls.pipeline import execute_calls
    from worker.runtime import get_lane_runtime

    settings = get_settings()
    runtime = get_lane_runtime()
    runtime.sender.start()
    consumer = InteractiveConsumer(
        # BLMOVE blocks up to POLL_S: the socket's own timeout is longer.
        # No retry: a take sent again would move a second id; one whose answer is lost is
        # found on the held list instead (worker/lane.py).
        lambda: redis.Redis.from_url(
            settings.redis_url, socket_timeout=10, retry=Retry(NoBackoff(), 0)
        ),
        lambda call_ids: execute_calls(call_ids, runtime),
        settings.worker_concurrency,
        lane_key(this_process().id),
    )
    consumer.start()
    return consumer


def _serve_metrics() -> None:
    """The lane's counters on a port of loopback the system picks: the parent adds them to
    its own on PASSTHRU_WORKER_METRICS_PORT (worker/lane_metrics.py)."""
    if not get_settings().worker_metrics_port:
        return
    from prometheus_client import start_http_server

    from worker.metrics import REGISTRY

    server, _ = start_http_server(0, addr="127.0.0.1", registry=REGISTRY)
    _tell_parent(f"{METRICS_PREFIX}{server.server_port}")


def _tell_parent(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
