"""`passthru dev`: API, worker, beat, Flower and the demo upstream in one terminal.

Embedded defaults: the SQLite file of DATABASE_URL, an embedded Redis unless REDIS_URL is
set (`--redis` chooses redis-server or fakeredis), an encryption key generated once into
`.passthru/` (git-ignored), a demo tenant and a demo connected account.

Before it starts anything it reads its settings (the environment over `.env`, see
`environment.py`) and checks every port it will bind: a bad setting or a taken port is a
one-line error (exit 2) and nothing is left running. The banner comes once the API (its
own, not another instance's) and a worker are ready; a process that exits before, or after,
stops the whole group. Ctrl-C stops every process it started, the embedded Redis last.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path

from api.dev import state
from api.dev.banner import BannerFacts, banner, override_lines, redis_line
from api.dev.children import (
    Child,
    Commands,
    NotReady,
    own_api_ready,
    say,
    start,
    stop,
    wait_until,
    watch,
    worker_ready,
)
from api.dev.demo_data import prepare_database
from api.dev.embedded_redis import EmbeddedRedis, RedisKind, start_embedded_redis
from api.dev.environment import environment, key_source, source
from api.dev.ports import DevPorts, plan_ports
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
from models.settings import DEFAULT_DATABASE_URL, Settings, get_settings

READY_TIMEOUT_S = 120.0  # for the API and a worker: dev migrates, then starts five processes


def _commands(ports: DevPorts, env: dict[str, str], token: str) -> Commands:
    """Each process's command line and environment; Flower's apart (see `_flower`)."""
    demo = [sys.executable, "-m", "uvicorn", "api.dev.demo_upstream:app", "--host", "127.0.0.1"]
    # Access lines only for failed requests (models/terminal.py), Celery without its
    # banners: the banner below says the rest.
    return {
        "demo": ([*demo, "--port", str(ports.demo), "--log-level", "warning"], env),
        # Only the API gets this run's token: its /readyz proves it is ours.
        "api": (api_argv(ports.api), {**env, "PASSTHRU_DEV_INSTANCE": token}),
        "worker": (quiet(worker_argv("passthru-dev@%h")), env),
        "beat": (quiet(beat_argv(state.STATE_DIR / "celerybeat-schedule")), env),
    }


def _flower(ports: DevPorts, env: dict[str, str]) -> Commands:
    """Flower, started once a worker is up (before, it warns that its inspections failed),
    logging only errors. Only it gets its password, in its environment (argv is visible to
    `ps`)."""
    argv = [*flower_argv(ports.flower, "127.0.0.1"), "--logging=error"]
    return {"flower": (argv, flower_env(env, f"{state.FLOWER_USER}:{state.flower_password()}"))}


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_on_signals() -> None:
    """SIGTERM (a terminal closing, `timeout`, a supervisor) and SIGHUP stop everything, like
    Ctrl-C; SIGINT too even when started with it ignored (a script's background job), where
    Python would leave it ignored and the children would outlive a killed `passthru dev`."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def _ignore_signals() -> None:
    """While everything is being stopped, further signals wait: the children run in sessions
    of their own, so only this process can stop them."""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


def _start_redis(kind: RedisKind) -> EmbeddedRedis:
    redis = start_embedded_redis(kind=kind)
    say(f"embedded Redis ({redis.kind}) on {redis.url}")
    if redis.kind == "fakeredis" and kind == "auto":
        say("no redis-server on PATH: fakeredis is for trying passthru, not for load")
    return redis


def _settings(given: dict[str, str]) -> Settings:
    """The settings of `given` (applied to this process's environment), validated before
    anything starts: an error is raised here, with nothing to stop."""
    os.environ.update(given)
    get_settings.cache_clear()
    return get_settings()


def _serve(children: list[Child], ports: DevPorts, env: dict[str, str], facts: BannerFacts) -> int:
    """Start the group, wait until the API (ours) and a worker are ready, then Flower; print
    the banner and run until a process exits (1) or Ctrl-C."""
    token = secrets.token_urlsafe(16)
    heartbeat = Path(env["PASSTHRU_HEARTBEAT_FILE"])
    try:
        start(_commands(ports, env, token), children)
        wait_until(lambda: own_api_ready(ports.api, token), children, "the API", READY_TIMEOUT_S)
        wait_until(worker_ready(heartbeat), children, "the worker", READY_TIMEOUT_S)
        start(_flower(ports, env), children)
        flower_url = f"http://127.0.0.1:{ports.flower}/healthcheck"
        answers = lambda: wait_until_answers(flower_url, 1, ok=lambda _status: True)  # noqa: E731
        wait_until(answers, children, "Flower", READY_TIMEOUT_S)
    except NotReady as exc:
        say(str(exc))
        return 1
    print(banner(facts), flush=True)
    return watch(children)


def run_dev(port: int, redis_kind: RedisKind = "auto", port_variable: str = "PORT") -> int:
    """Run everything until Ctrl-C (0) or until a process exits (1); `redis_kind` chooses
    the embedded Redis when REDIS_URL is unset ("auto": redis-server from PATH if there is
    one, else fakeredis). Raises ConfigError (a setting, a taken port) before starting any."""
    given = source()
    redis_url = given.get("REDIS_URL")
    if redis_url and redis_kind != "auto":
        raise ConfigError(
            f"--redis {redis_kind} starts an embedded Redis, but REDIS_URL is set: "
            "unset one of them"
        )
    keys_from = key_source(given)
    settings = _settings(given)
    ports = plan_ports(port, port_variable, given)
    _stop_on_signals()
    state.make_state_dir()
    redis: EmbeddedRedis | None = None
    children: list[Child] = []
    run_dir = tempfile.TemporaryDirectory(prefix="passthru-dev-")
    try:
        if not redis_url:
            redis = _start_redis(redis_kind)
            redis_url = redis.url
        env = environment(given, redis_url, ports, Path(run_dir.name) / "worker.heartbeat")
        api_key = prepare_database(env, keys_from, say)
        say(f"database ready ({shown(env.get('DATABASE_URL', DEFAULT_DATABASE_URL))})")
        from models.catalog.apps import get_catalog

        overrides = override_lines(settings.upstream_overrides, get_catalog())
        facts = BannerFacts(
            ports.api,
            ports.flower,
            api_key,
            redis_line(redis, redis_url),
            float(env["PASSTHRU_DEFAULT_WAIT_S"] or 0),
            overrides,
        )
        return _serve(children, ports, env, facts)
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        _ignore_signals()  # a second Ctrl-C must not cut the stopping short
        stop(children)
        if redis is not None:
            redis.stop()
        run_dir.cleanup()
