"""The console under test: an API on the test database and its own Redis, served by
uvicorn on a free port (no worker: calls are written as a worker leaves them), and the
browser of `tests/browser.py`."""

from __future__ import annotations

import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.exceptions import StarletteDeprecationWarning

from api.app import create_app, release
from api.dev.embedded_redis import EmbeddedRedis, free_port
from models.accounts.tenants import create_tenant
from models.crypto.secrets import Vault
from models.db.tables import ConnectedAccount, FunctionCall, Tenant
from models.ratelimit.store import MemoryLimiter
from models.settings import Settings
from tests.api.conftest import PublishedIds
from tests.worker.factories import make_account, make_call

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
# The still clock of the `limiter` fixture, in ms.
NOW_MS = int(time.time() * 1000)


@pytest.fixture(scope="session")
def console_published() -> PublishedIds:
    return PublishedIds()


@pytest.fixture(scope="session")
def console_app(
    engine: Engine,
    encryption_key: str,
    redis_server: EmbeddedRedis,
    console_published: PublishedIds,
) -> Iterator[FastAPI]:
    settings = Settings(
        _env_file=None,
        database_url=engine.url.render_as_string(hide_password=False),
        encryption_keys=encryption_key,
        redis_url=redis_server.url,
        apps_file=None,
        upstream_overrides={},
        metrics_port=0,
    )
    app = create_app(settings, publisher=console_published)
    yield app
    release(app)


@pytest.fixture(scope="session")
def origin(console_app: FastAPI) -> Iterator[str]:
    """The console served over HTTP on a free port, for the browser."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(console_app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="console-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the console's server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class Tenancy:
    """One tenant, its key, a connected account, and calls written for it."""

    engine: Engine
    tenant: Tenant
    key: str
    account: ConnectedAccount
    calls: list[FunctionCall] = field(default_factory=list)

    def call(self, **fields: Any) -> FunctionCall:
        made = make_call(self.engine, self.account, **fields)
        self.calls.append(made)
        return made


@pytest.fixture
def new_tenancy(engine: Engine, vault: Vault) -> Callable[[], Tenancy]:
    def make() -> Tenancy:
        tenant, key = create_tenant(engine, f"console-{os.urandom(3).hex()}")
        return Tenancy(engine, tenant, key, make_account(engine, tenant, vault))

    return make


@pytest.fixture
def tenancy(new_tenancy: Callable[[], Tenancy]) -> Tenancy:
    return new_tenancy()


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html
    return found.group(1)


@pytest.fixture
def browser_client(console_app: FastAPI) -> Iterator[TestClient]:
    """A browser over HTTP (cookies kept, redirects not followed) on the console."""
    with TestClient(console_app, follow_redirects=False) as client:
        yield client


def sign_in(client: TestClient, key: str, **headers: str) -> str:
    """Sign in with `key`; the signed-in page's CSRF token."""
    token = csrf_of(client.get("/console/sign-in", headers=headers).text)
    response = client.post(
        "/console/sign-in", data={"api_key": key, "csrf_token": token}, headers=headers
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/console").text)


@pytest.fixture
def limiter(console_app: FastAPI) -> Iterator[MemoryLimiter]:
    """The app's limiter replaced by one in memory whose clock stands still (at NOW_MS), so
    the console and the API read the very same state."""
    kept = console_app.state.limiter
    console_app.state.limiter = MemoryLimiter(clock=lambda: NOW_MS)
    yield console_app.state.limiter
    console_app.state.limiter = kept
