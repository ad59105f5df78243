"""The processes `passthru dev` starts, as one group: each one's output printed line by line
under its name, a readiness wait that fails as soon as one of them exits, and a probe that
makes sure the API that answers on PORT is this run's own, not another instance's."""

from __future__ import annotations

import hmac
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.dev.harness import stop_processes

# The header dev's probe sends to /readyz with this run's token (PASSTHRU_DEV_INSTANCE);
# only the API started with that token answers it back.
INSTANCE_HEADER = "X-Passthru-Instance"
_COLORS = {"api": 36, "worker": 33, "beat": 35, "flower": 32, "demo": 34}
# Each process's command line and environment, by name.
Commands = dict[str, tuple[list[str], dict[str, str]]]


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]


class NotReady(Exception):
    """A child exited, or the API's port answers for another process: the message says which."""


def say(message: str) -> None:
    print(f"passthru dev | {message}", flush=True)


def _pump(child: Child) -> None:
    color = _COLORS.get(child.name, 0) if sys.stdout.isatty() else 0
    label = f"\033[{color}m{child.name:>6}\033[0m" if color else f"{child.name:>6}"
    assert child.process.stdout is not None
    for line in child.process.stdout:
        print(f"{label} | {line.rstrip()}", flush=True)


def start(commands: Commands, children: list[Child]) -> None:
    """Start each process, adding it to `children` at once (so it is stopped whatever
    happens next), its output printed line by line under its name."""
    for name, (argv, env) in commands.items():
        process = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
        )
        child = Child(name, process)
        children.append(child)
        threading.Thread(target=_pump, args=(child,), daemon=True).start()


def stop(children: list[Child]) -> None:
    stop_processes([child.process for child in children], timeout_s=10)


def _check_alive(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is not None:
            raise NotReady(
                f"{child.name} exited with code {child.process.returncode} before passthru "
                "was ready (its lines are above); stopping the rest"
            )


def own_api_ready(port: int, token: str) -> bool:
    """Whether this run's API answers ready on `port`. A ready answer that does not echo
    `token` is another process's: ours cannot listen there, so that is an error."""
    try:
        answer = httpx.get(
            f"http://127.0.0.1:{port}/readyz", headers={INSTANCE_HEADER: token}, timeout=1
        )
    except httpx.HTTPError:
        return False
    if answer.status_code != 200:
        return False  # not ready yet (ours, or not: the next answer tells)
    if not hmac.compare_digest(answer.headers.get(INSTANCE_HEADER, ""), token):
        raise NotReady(
            f"port {port} answers for another process (another passthru dev?), not this "
            "run's API: set PORT (or --port) to a free port"
        )
    return True


def wait_until(
    ready: Callable[[], bool], children: list[Child], what: str, timeout_s: float
) -> None:
    """Return once `ready()`; raise NotReady if a child exits, or time runs out, first."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        _check_alive(children)
        if time.monotonic() > deadline:
            raise NotReady(f"{what} not ready after {timeout_s:g} s (see the lines above)")
        time.sleep(0.2)


def worker_ready(heartbeat: Path) -> Callable[[], bool]:
    """Whether the worker has started: it touches its heartbeat file once ready."""
    return heartbeat.exists


def watch(children: list[Child]) -> int:
    """Wait until a process exits (1: the rest are stopped then)."""
    while all(c.process.poll() is None for c in children):
        time.sleep(0.5)
    dead = next(c for c in children if c.process.poll() is not None)
    say(f"{dead.name} exited with code {dead.process.returncode}; stopping the rest")
    return 1
