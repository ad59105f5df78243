"""The environment of `passthru dev` and of every process it starts.

Other commands read `.env` through their settings. `dev` reads it itself and passes it on:
what its children get is the environment over `.env` (the environment wins), plus the dev
defaults (the encryption key kept in `.passthru/`, the embedded Redis, ...) only where
neither sets them. So a PASSTHRU_ENCRYPTION_KEYS in `.env` is the one dev uses.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dotenv import dotenv_values

from api.dev import state
from api.dev.demo_upstream import DEMO_ORIGIN
from api.dev.ports import DevPorts

ENV_FILE = Path(".env")  # read from the folder dev runs in, as Settings reads it
# PASSTHRU_DEFAULT_WAIT_S unless set: a submission without `Prefer` waits this long for its
# result, so the banner's curl line answers 200 {network_code, output, ...} as Integry's do.
DEV_DEFAULT_WAIT_S = "10"


def source() -> dict[str, str]:
    """The environment over `.env`: what dev's settings, and its children's, are read from."""
    from_file = dotenv_values(ENV_FILE) if ENV_FILE.is_file() else {}
    return {**{k: v for k, v in from_file.items() if v is not None}, **os.environ}


def key_source(given: dict[str, str]) -> str:
    """Where this run's encryption keys come from, for messages about them."""
    if "PASSTHRU_ENCRYPTION_KEYS" in os.environ:
        return "PASSTHRU_ENCRYPTION_KEYS in the environment"
    if given.get("PASSTHRU_ENCRYPTION_KEYS"):
        return f"PASSTHRU_ENCRYPTION_KEYS in {ENV_FILE.resolve()}"
    return f"{(state.STATE_DIR / 'encryption.key').resolve()}"


def environment(
    given: dict[str, str], redis_url: str, ports: DevPorts, heartbeat: Path
) -> dict[str, str]:
    """Each child's environment: `given` (see `source`) with this run's Redis, ports and dev
    defaults; the demo upstream added to PASSTHRU_UPSTREAM_OVERRIDES (already validated)."""
    env = dict(given)
    env["PASSTHRU_ENV"] = "dev"
    env.setdefault("PASSTHRU_LOG_FORMAT", "dev")  # one line per call (models/terminal.py)
    env["REDIS_URL"] = redis_url
    env["PORT"] = str(ports.api)
    env["FLOWER_PORT"] = str(ports.flower)
    env["PASSTHRU_METRICS_PORT"] = str(ports.metrics)
    env["PASSTHRU_WORKER_METRICS_PORT"] = str(ports.worker_metrics)
    # The worker touches it once ready: dev waits for it before the banner.
    env["PASSTHRU_HEARTBEAT_FILE"] = str(heartbeat)
    env.setdefault("PASSTHRU_ENCRYPTION_KEYS", state.encryption_key())
    env.setdefault("PASSTHRU_ALLOW_PRIVATE_NETWORKS", "true")
    env.setdefault("PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
    env.setdefault("PASSTHRU_DEFAULT_WAIT_S", DEV_DEFAULT_WAIT_S)
    overrides = json.loads(env.get("PASSTHRU_UPSTREAM_OVERRIDES") or "{}")
    overrides.setdefault(DEMO_ORIGIN, f"http://127.0.0.1:{ports.demo}")
    env["PASSTHRU_UPSTREAM_OVERRIDES"] = json.dumps(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    return env
