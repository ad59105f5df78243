"""End-to-end fixtures: a real Redis, a real Celery worker, the real API over HTTP, and a
local HTTP server standing in for Slack and Pipedrive (via PASSTHRU_UPSTREAM_OVERRIDES)."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import Engine

from api.dev.embedded_redis import EmbeddedRedis, free_port, start_embedded_redis
from api.dev.harness import Proc, Processes, StackBase, environment
from models.accounts.tenants import create_tenant
from models.catalog.apps import load_catalog
from tests.conftest import RUN_ONCE
from tests.e2e.upstream import Upstream

WAIT_S = 30  # how long a test waits for a call to end before failing


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)
            if not RUN_ONCE & set(item.keywords):
                item.add_marker(pytest.mark.db)


@dataclass
class Stack(StackBase):
    """Its own Redis, the API and workers (`processes`), the tests' stand-in upstream."""

    base_url: str
    redis: EmbeddedRedis
    upstream: Upstream
    engine: Engine
    processes: Processes

    def worker(self, name: str = "worker", concurrency: int = 8) -> Proc:
        return self.processes.start_worker(name, "-c", str(concurrency))

    def beat(self) -> Proc:
        return self.processes.start_beat()

    def client(self, api_key: str, user_id: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"}
        if user_id:
            headers["X-User-ID"] = user_id
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=WAIT_S + 10)

    def all_logs(self) -> str:
        return self.processes.output()


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
# An app of the client credentials grant, served by the stand-in's ClientCredentialsApi.
CCAPP = {
    **_limited("ccapp", []),
    "oauth2": {
        "grant": "client_credentials",
        "token_url": "https://ccapp.test/ccapp/token",
        "token_auth": "basic",
        "scopes": ["items"],
    },
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
    "ccapp": CCAPP,
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
    api_port: int | None = None,
) -> Iterator[Stack]:
    """Its own Redis, the API and one worker, with the env tests need (plus `extra_env`,
    `overrides` added to PASSTHRU_UPSTREAM_OVERRIDES and `apps` to the catalog; the API on
    `api_port` when given)."""
    apps_file = logs / "apps.yaml"
    apps_file.write_text(yaml.safe_dump({**TEST_APPS, **(apps or {})}))
    routes = {
        "https://slack.com": upstream.origin,
        "https://api.pipedrive.com": upstream.origin,
        **{f"https://{slug}.test": upstream.origin for slug in LIMITED_APPS},
        "https://oauthy.test": upstream.origin,
        "https://ccapp.test": upstream.origin,
        **{origin: upstream.origin for origin in AUTH_STYLE_ORIGINS},
        **(overrides or {}),
    }
    settings = {
        "PASSTHRU_APPS_FILE": str(apps_file),
        "PASSTHRU_UPSTREAM_OVERRIDES": json.dumps(routes),
        "PASSTHRU_ALLOW_PRIVATE_NETWORKS": "false",
        # The tests' webhook receivers listen on loopback.
        "PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "PASSTHRU_HEARTBEAT_FILE": str(logs / "worker.heartbeat"),
        # The stack's first worker serves its metrics here (later ones find it taken).
        "PASSTHRU_WORKER_METRICS_PORT": str(free_port()),
        "PASSTHRU_METRICS_PORT": str(free_port()),
        **(extra_env or {}),
    }
    redis = start_embedded_redis()
    try:
        env = environment(database_url, redis.url, encryption_key, **settings)
        with Processes(logs, env) as processes:
            base_url = processes.start_api(port=api_port)
            stack = Stack(base_url, redis, upstream, engine, processes)
            stack.worker()
            yield stack
    finally:
        redis.stop()


OwnStack = Callable[..., AbstractContextManager[Stack]]


@pytest.fixture(scope="session")
def own_stack(
    database_url: str,
    engine: Engine,
    encryption_key: str,
    upstream: Upstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> OwnStack:
    """Makes a stack of its own (`with own_stack("name-logs", extra_env, apps=...) as s:`),
    its logs in a new folder of that name; the options are `running_stack`'s."""

    def make(
        logs: str, extra_env: dict[str, str] | None = None, **options: Any
    ) -> AbstractContextManager[Stack]:
        folder = tmp_path_factory.mktemp(logs)
        return running_stack(
            database_url, engine, encryption_key, upstream, folder, extra_env, **options
        )

    return make


@pytest.fixture(scope="session")
def stack(own_stack: OwnStack) -> Iterator[Stack]:
    with own_stack("logs") as s:
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
