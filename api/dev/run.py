"""`passthru dev`: API, worker, beat, Flower and the demo upstream in one terminal.

Embedded defaults: the SQLite file of DATABASE_URL, an embedded Redis unless REDIS_URL is
set (`--redis` chooses redis-server or fakeredis), an encryption key generated once into
`.passthru/` (git-ignored), a demo tenant and a demo connected account. Ctrl-C stops every
process it started.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from api.dev import state
from api.dev.demo_data import DEMO_USER, prepare_database
from api.dev.demo_upstream import DEMO_ORIGIN
from api.dev.embedded_redis import EmbeddedRedis, RedisKind, free_port, start_embedded_redis
from api.dev.harness import stop_processes
from api.dev.processes import (
    api_argv,
    beat_argv,
    flower_argv,
    flower_env,
    quiet,
    wait_until_answers,
    worker_argv,
)
from models.db.engine import shown
from models.errors import ConfigError
from models.settings import DEFAULT_DATABASE_URL, Settings

_COLORS = {"api": 36, "worker": 33, "beat": 35, "flower": 32, "demo": 34}
# Flower's port when FLOWER_PORT is unset (another is taken if it is busy).
DEFAULT_FLOWER_PORT: int = Settings.model_fields["flower_port"].default
# Each process's command line and environment, by name.
Commands = dict[str, tuple[list[str], dict[str, str]]]
# PASSTHRU_DEFAULT_WAIT_S unless set: a submission without `Prefer` waits this long for its
# result, so the banner's curl line answers 200 {network_code, output, ...} as Integry's do.
DEV_DEFAULT_WAIT_S = "10"


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]


def _port_or_free(port: int) -> int:
    """`port` if nothing listens there, else any free port."""
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) != 0:
            return port
    return free_port()


def _say(message: str) -> None:
    print(f"passthru dev | {message}", flush=True)


def _pump(child: Child) -> None:
    color = _COLORS.get(child.name, 0) if sys.stdout.isatty() else 0
    label = f"\033[{color}m{child.name:>6}\033[0m" if color else f"{child.name:>6}"
    assert child.process.stdout is not None
    for line in child.process.stdout:
        print(f"{label} | {line.rstrip()}", flush=True)


def _environment(redis_url: str, demo_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PASSTHRU_ENV"] = "dev"
    env.setdefault("PASSTHRU_LOG_FORMAT", "dev")  # one line per call (models/terminal.py)
    env["REDIS_URL"] = redis_url
    env.setdefault("PASSTHRU_ENCRYPTION_KEYS", state.encryption_key())
    env.setdefault("PASSTHRU_ALLOW_PRIVATE_NETWORKS", "true")
    env.setdefault("PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
    env.setdefault("PASSTHRU_DEFAULT_WAIT_S", DEV_DEFAULT_WAIT_S)
    overrides = json.loads(env.get("PASSTHRU_UPSTREAM_OVERRIDES") or "{}")
    overrides.setdefault(DEMO_ORIGIN, f"http://127.0.0.1:{demo_port}")
    env["PASSTHRU_UPSTREAM_OVERRIDES"] = json.dumps(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _commands(port: int, flower_port: int, demo_port: int, env: dict[str, str]) -> Commands:
    """Each process's command line and environment."""
    py = sys.executable
    argv = {
        "demo": [
            py,
            "-m",
            "uvicorn",
            "api.dev.demo_upstream:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(demo_port),
            "--log-level",
            "warning",
        ],
        # Access lines only for failed requests (models/terminal.py), Celery without its
        # banners, Flower only when something is wrong: the banner below says the rest.
        "api": api_argv(port),
        "worker": quiet(worker_argv("passthru-dev@%h")),
        "beat": quiet(beat_argv(state.STATE_DIR / "celerybeat-schedule")),
        "flower": [*flower_argv(flower_port, "127.0.0.1"), "--logging=error"],
    }
    # Only Flower gets its password, and in its environment: argv is visible to `ps`.
    flower = flower_env(env, f"{state.FLOWER_USER}:{state.flower_password()}")
    return {name: (line, flower if name == "flower" else env) for name, line in argv.items()}


def _wait_for_api(port: int, children: list[Child], timeout_s: float = 60.0) -> bool:
    return wait_until_answers(
        f"http://127.0.0.1:{port}/readyz",
        timeout_s,
        alive=lambda: all(c.process.poll() is None for c in children),
    )


def _redis_line(redis: EmbeddedRedis | None, url: str) -> str:
    """Which Redis this run uses, for the banner (a password in REDIS_URL is not shown)."""
    if redis is None:
        parts = urlsplit(url)
        if parts.password:
            host = parts.netloc.rsplit("@", 1)[1]
            url = parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
        return f"{url}   (from REDIS_URL)"
    if redis.kind == "fakeredis":
        return (
            f"fakeredis on {url}   (in this process: for trying passthru, not for load; "
            "install redis-server for real use, see README)"
        )
    return f"redis-server on {url}   (embedded, in a temp dir: emptied at exit)"


def curl_line(base: str, api_key: str, default_wait_s: float) -> tuple[str, str]:
    """The banner's demo call and what it answers: without `Prefer` when the API waits by
    default (PASSTHRU_DEFAULT_WAIT_S), else with `Prefer: wait=10`."""
    body = json.dumps({"method": "GET", "url": f"{DEMO_ORIGIN}/api/hello?name=passthru"})
    waits_by_default = default_wait_s > 0
    prefer = "" if waits_by_default else "-H 'Prefer: wait=10' "
    curl = (
        f"curl -s -X POST {base}/demo-passthrough-request "
        f"-H {shlex.quote('Authorization: Bearer ' + api_key)} "
        f"-H 'X-User-ID: {DEMO_USER}' -H 'Content-Type: application/json' "
        f"{prefer}-d {shlex.quote(body)}"
    )
    waits, otherwise = (
        (f"{default_wait_s:g} s (PASSTHRU_DEFAULT_WAIT_S)", "with -H 'Prefer: respond-async'")
        if waits_by_default
        else ("10 s (Prefer: wait=10)", "without the Prefer header")
    )
    answers = (
        f"  It waits up to {waits} for the call to end and answers\n"
        f"  200 {{id, status, network_code, output, headers}}; {otherwise}, 202 at once."
    )
    return curl, answers


def _banner(port: int, flower_port: int, api_key: str, redis: str, default_wait_s: float) -> None:
    base = f"http://127.0.0.1:{port}"
    curl, answers = curl_line(base, api_key, default_wait_s)
    print(
        "\n"
        "  passthru is running\n"
        f"  API       {base}\n"
        f"  API docs  {base}/docs\n"
        f"  Console   {base}/console   (sign in with the API key below)\n"
        f"  Flower    http://127.0.0.1:{flower_port}   (user {state.FLOWER_USER}, password "
        f"{state.flower_password()})\n"
        f"  Redis     {redis}\n"
        f"  API key   {api_key}   (demo tenant; user '{DEMO_USER}' has a demo account)\n"
        "\n  Try it (calls the built-in demo upstream, offline):\n\n"
        f"{curl}\n\n"
        f"{answers}\n\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )


def _stop(children: list[Child], redis: EmbeddedRedis | None) -> None:
    stop_processes([child.process for child in children], timeout_s=10)
    if redis is not None:
        redis.stop()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_on_signals() -> None:
    """SIGTERM (a terminal closing, `timeout`, a supervisor) and SIGHUP stop everything, like
    Ctrl-C; SIGINT too even when started with it ignored (a script's background job), where
    Python would leave it ignored and the children would outlive a killed `passthru dev`."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def _start_redis(kind: RedisKind) -> EmbeddedRedis:
    redis = start_embedded_redis(kind=kind)
    _say(f"embedded Redis ({redis.kind}) on {redis.url}")
    if redis.kind == "fakeredis" and kind == "auto":
        _say("no redis-server on PATH: fakeredis is for trying passthru, not for load")
    return redis


def _start(commands: Commands, children: list[Child]) -> None:
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


def _watch(children: list[Child]) -> int:
    """Wait until a process exits (1: the rest are stopped then)."""
    while all(c.process.poll() is None for c in children):
        time.sleep(0.5)
    dead = next(c for c in children if c.process.poll() is not None)
    _say(f"{dead.name} exited with code {dead.process.returncode}; stopping the rest")
    return 1


def run_dev(port: int, redis_kind: RedisKind = "auto") -> int:
    """Run everything until Ctrl-C (0) or until a process exits (1); `redis_kind` chooses
    the embedded Redis when REDIS_URL is unset ("auto": redis-server from PATH if there is
    one, else fakeredis)."""
    redis_url = os.environ.get("REDIS_URL")
    if redis_url and redis_kind != "auto":
        raise ConfigError(
            f"--redis {redis_kind} starts an embedded Redis, but REDIS_URL is set: "
            "unset one of them"
        )
    _stop_on_signals()
    state.make_state_dir()
    redis: EmbeddedRedis | None = None
    if not redis_url:
        redis = _start_redis(redis_kind)
        redis_url = redis.url
    demo_port = free_port()
    flower_port = int(os.environ.get("FLOWER_PORT") or _port_or_free(DEFAULT_FLOWER_PORT))
    env = _environment(redis_url, demo_port)
    children: list[Child] = []
    try:
        api_key = prepare_database(env)
        _say(f"database ready ({shown(env.get('DATABASE_URL', DEFAULT_DATABASE_URL))})")
        _start(_commands(port, flower_port, demo_port, env), children)
        if not _wait_for_api(port, children):
            _say(
                f"the API did not become ready on port {port}; see the lines above "
                "(is the port taken? set PORT to another)"
            )
            return 1
        default_wait_s = float(env["PASSTHRU_DEFAULT_WAIT_S"] or 0)
        _banner(port, flower_port, api_key, _redis_line(redis, redis_url), default_wait_s)
        return _watch(children)
    except KeyboardInterrupt:
        _say("stopping")
        return 0
    finally:
        _stop(children, redis)
