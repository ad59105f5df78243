"""The command lines of passthru's processes (as the Procfile runs them) and a readiness
probe: one place for `passthru dev`, the end-to-end tests and the benchmarks."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from models.keys import QUEUE_BULK, QUEUE_INTERACTIVE, QUEUE_MAINTENANCE, QUEUE_WEBHOOKS

CALL_AND_SWEEP_QUEUES = ",".join((QUEUE_INTERACTIVE, QUEUE_BULK, QUEUE_WEBHOOKS, QUEUE_MAINTENANCE))


def flower_argv(port: int, address: str) -> list[str]:
    """Flower on the broker. Its password is not here: every user of the machine can read a
    command line (`ps`); start it with `flower_env`."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "flower",
        f"--address={address}",
        f"--port={port}",
        "--purge_offline_workers=60",
    ]


def flower_env(env: Mapping[str, str], basic_auth: str) -> dict[str, str]:
    """`env` with Flower's basic auth (`user:password[,user2:password2]`): Flower reads
    FLOWER_BASIC_AUTH from its environment, which only its user can read."""
    return {**env, "FLOWER_BASIC_AUTH": basic_auth}


def api_argv(port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "api.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]


def worker_argv(node: str, *extra: str, loglevel: str = "INFO") -> list[str]:
    """A worker on every lane and the sweeper's queue, named `node` (e.g. `w1@%h`)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "worker",
        "-Q",
        CALL_AND_SWEEP_QUEUES,
        "-n",
        node,
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        loglevel,
        *extra,
    ]


def quiet(celery_argv: list[str]) -> list[str]:
    """A `celery` command line (`worker_argv`, `beat_argv`) without its start-up banner."""
    at = celery_argv.index("celery") + 1
    return [*celery_argv[:at], "--quiet", *celery_argv[at:]]


def beat_argv(schedule: Path | str, loglevel: str = "INFO") -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "beat",
        "--loglevel",
        loglevel,
        "--schedule",
        str(schedule),
    ]


def wait_until_answers(
    url: str,
    timeout_s: float = 60.0,
    alive: Callable[[], bool] = lambda: True,
    ok: Callable[[int], bool] = lambda status: status == 200,
) -> bool:
    """Poll `url` until its status is `ok`; False on timeout or once `alive()` is False."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            if ok(httpx.get(url, timeout=1).status_code):
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False
