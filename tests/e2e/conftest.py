"""End-to-end fixtures: a real Redis, a real Celery worker, the real API over HTTP, and a
local HTTP server standing in for Slack and Pipedrive (via PASSTHRU_UPSTREAM_OVERRIDES)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import Engine

from api.dev.embedded_redis import EmbeddedRedis, free_port, start_embedded_redis
from api.dev.processes import api_argv, beat_argv, wait_until_answers, worker_argv
from models.accounts.tenants import create_tenant
from models.catalog.apps import load_catalog
from tests.e2e.upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0
WAIT_S = 30  # how long a test waits for a call to end before failing


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.db)


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT
        )
        handle.close()
        return self

    def stop(self, sig: str = "TERM") -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if sig == "KILL":
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Stack:
    base_url: str
    redis: EmbeddedRedis
    upstream: Upstream
    engine: Engine
    env: dict[str, str]
    logs: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def worker(self, name: str = "worker", concurrency: int = 8) -> Proc:
        proc = Proc(
            name,
            worker_argv(f"{name}-{secrets.token_hex(3)}@%h", "-c", str(concurrency)),
            self.env,
            self.logs / f"{name}.log",
        ).start()
        self.procs[name] = proc
        _wait_for_log(proc, " ready.")
        return proc

    def beat(self) -> Proc:
        proc = Proc(
            "beat",
            beat_argv(self.logs / "beat-schedule"),
            self.env,
            self.logs / "beat.log",
        ).start()
        self.procs["beat"] = proc
        _wait_for_log(proc, "beat: Starting")
        return proc

    def client(self, api_key: str, user_id: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"}
        if user_id:
            headers["X-User-ID"] = user_id
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=WAIT_S + 10)

    def all_logs(self) -> str:
        return "\n".join(p.output() for p in self.procs.values())


def _wait_for_log(proc: Proc, marker: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while marker not in proc.output():
        assert proc.process is not None
        if proc.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not start:\n{proc.output()[-4000:]}")
        time.sleep(0.1)


def _wait_ready(url: str, proc: Proc) -> None:
    assert proc.process is not None
    process = proc.process
    if not wait_until_answers(
        f"{url}/readyz", STARTUP_TIMEOUT_S, alive=lambda: process.poll() is None
    ):
        raise RuntimeError(f"api did not start:\n{proc.output()[-4000:]}")


def _roomy(slug: str) -> dict[str, Any]:
    """A built-in app with its limits raised far above what the tests send, so tests of
    other things never wait (the limiter still books every call)."""
    entry = load_catalog().get(slug)
    assert entry is not None
    data = entry.model_dump(mode="json", exclude={"slug"}, exclude_none=True)
    data["rate_limits"] = [{"scope": "account", "limit": 10_000, "period_s": 1, "burst": 1_000}]
    return data


def _limited(slug: str, rate_limits: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": slug,
        "base_url": f"https://{slug}.test/{slug}",
        "allowed_hosts": [f"{slug}.test"],
        "auth": {"type": "bearer"},
        "rate_limits": rate_limits,
    }


# Apps of the rate-limit tests, served by the stand-in upstream under /{slug}/...
LIMITED_APPS = {
    "tenps": [{"scope": "app", "limit": 10, "period_s": 1, "burst": 2}],
    "twops": [{"scope": "app", "limit": 2, "period_s": 1}],
    "hushed": [],  # no declared limit: only what the upstream says (429s) holds it back
}
# An OAuth2 app whose token endpoint is the stand-in's /oauthy/token.
OAUTH_CLIENT = {"client_id": "passthru-e2e", "client_secret": "e2e-client-secret"}
OAUTHY = {
    **_limited("oauthy", []),
    "oauth2": {"token_url": "https://oauthy.test/oauthy/token", **OAUTH_CLIENT},
}
# Built-in apps of each auth style, reached through the stand-in (accounts use "acme").
AUTH_STYLE_ORIGINS = (
    "https://acme.zendesk.com",  # per-account subdomain, bearer
    "https://api.hunter.io",  # query parameter
    "https://acme.freshdesk.com",  # basic, API key as the user
    "https://api.postmarkapp.com",  # a header of its own
)
TEST_APPS = {
    "slack": _roomy("slack"),
    "pipedrive": _roomy("pipedrive"),
    **{slug: _limited(slug, limits) for slug, limits in LIMITED_APPS.items()},
    "oauthy": OAUTHY,
}


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@contextmanager
def running_stack(
    database_url: str,
    engine: Engine,
    encryption_key: str,
    upstream: Upstream,
    logs: Path,
    extra_env: dict[str, str] | None = None,
    overrides: dict[str, str] | None = None,
    apps: dict[str, Any] | None = None,
) -> Iterator[Stack]:
    """Its own Redis, the API and one worker, with the env tests need (plus `extra_env`,
    `overrides` added to PASSTHRU_UPSTREAM_OVERRIDES and `apps` to the catalog)."""
    redis = start_embedded_redis()
    apps_file = logs / "apps.yaml"
    apps_file.write_text(yaml.safe_dump({**TEST_APPS, **(apps or {})}))
    env = {
        **os.environ,
        "PASSTHRU_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis.url,
        "PASSTHRU_ENCRYPTION_KEYS": encryption_key,
        "PASSTHRU_APPS_FILE": str(apps_file),
        "PASSTHRU_UPSTREAM_OVERRIDES": json.dumps(
            {
                "https://slack.com": upstream.origin,
                "https://api.pipedrive.com": upstream.origin,
                **{f"https://{slug}.test": upstream.origin for slug in LIMITED_APPS},
                "https://oauthy.test": upstream.origin,
                **{origin: upstream.origin for origin in AUTH_STYLE_ORIGINS},
                **(overrides or {}),
            }
        ),
        "PASSTHRU_ALLOW_PRIVATE_NETWORKS": "false",
        # The tests' webhook receivers listen on loopback.
        "PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "PASSTHRU_HEARTBEAT_FILE": str(logs / "worker.heartbeat"),
        # The stack's first worker serves its metrics here (later ones find it taken).
        "PASSTHRU_WORKER_METRICS_PORT": str(free_port()),
        "PASSTHRU_METRICS_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    port = free_port()
    stack = Stack(f"http://127.0.0.1:{port}", redis, upstream, engine, env, logs)
    api = Proc(
        "api",
        api_argv(port),
        env,
        logs / "api.log",
    ).start()
    stack.procs["api"] = api
    try:
        _wait_ready(stack.base_url, api)
        stack.worker()
        yield stack
    finally:
        for proc in stack.procs.values():
            proc.stop()
        redis.stop()


@pytest.fixture(scope="session")
def stack(
    database_url: str,
    engine: Engine,
    encryption_key: str,
    upstream: Upstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("logs")
    with running_stack(database_url, engine, encryption_key, upstream, logs) as s:
        yield s


@dataclass
class Caller:
    """One tenant, seen from its side of the API."""

    api_key: str
    tenant_id: str
    http: httpx.Client

    def connect(
        self,
        app: str,
        user_id: str,
        credentials: dict[str, Any],
        config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"app": app, "credentials": credentials}
        if config is not None:
            body["connection_config"] = config
        r = self.http.post("/connected-accounts", json=body, headers={"X-User-ID": user_id})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def wait(self, call_id: str) -> dict[str, Any]:
        r = self.http.get(f"/function-calls/{call_id}", params={"wait": WAIT_S})
        assert r.status_code == 200, r.text
        call = dict(r.json())
        assert call["status"] in ("completed", "failed", "cancelled"), call
        return call


@contextmanager
def new_caller(stack: Stack, prefix: str = "e2e") -> Iterator[Caller]:
    """A new tenant of `stack`, with its client."""
    tenant, key = create_tenant(stack.engine, f"{prefix}-{secrets.token_hex(3)}")
    with stack.client(key) as http:
        yield Caller(key, tenant.id, http)


@pytest.fixture
def caller(stack: Stack) -> Iterator[Caller]:
    with new_caller(stack) as c:
        yield c


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
