"""The API app, pointed at the test database, with publishing recorded instead of sent; a
tenant's view of it (`Caller`), and the helpers the tests of several resources share."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, update
from sqlmodel import col
from starlette.exceptions import StarletteDeprecationWarning

# starlette deprecates running its TestClient on `httpx` (it wants the `httpx2` package) and
# warns once, at import. Only that import is exempted from filterwarnings=error; see the
# test report.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore",
        message=r"Using `httpx` with `starlette.testclient` is deprecated",
        category=StarletteDeprecationWarning,
    )
    from fastapi.testclient import TestClient

from api.app import create_app, release
from api.dev.embedded_redis import EmbeddedRedis, start_embedded_redis
from models.accounts.states import AccountStatus
from models.accounts.tenants import create_tenant
from models.broker import NO_TENANTS, NoPublisher
from models.calls.states import CallStatus
from models.crypto.secrets import Vault
from models.db.engine import session_scope
from models.db.ids import new_id
from models.db.tables import ConnectedAccount, FunctionCall, Tenant
from models.settings import Settings
from worker.webhooks.deliveries import WebhookRuntime, deliver, lease_for
from worker.webhooks.sender import InlinePoster

CALL = {"method": "GET", "url": "conversations.list?limit=2"}  # a valid Slack call


@dataclass(frozen=True)
class Parse:
    """One JSON body the API parsed: its length and the thread that parsed it."""

    length: int
    thread: str


@pytest.fixture
def watch_json_parser(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[Parse]]:
    """Call it to watch the API's JSON parser (`orjson.loads`, as `api.parsing` calls it) from
    then on, to the end of the test; the list it returns fills with every parse."""

    def watch() -> list[Parse]:
        parses: list[Parse] = []
        real_loads = orjson.loads

        def loads(raw: bytes | str) -> Any:
            parses.append(Parse(len(raw), threading.current_thread().name))
            return real_loads(raw)

        monkeypatch.setattr("api.parsing.orjson.loads", loads)
        return parses

    return watch


class PublishedIds:
    """The API's publisher in tests: records what would reach the broker."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.queues: list[str] = []
        self.delivery_ids: list[str] = []
        self.tenant_of: dict[str, str] = {}  # each interactive id's tenant, as published
        self.refuse_deliveries = False  # as a broker that is away does

    def publish_calls(
        self,
        call_ids: Sequence[str],
        queue: str,
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
        first: bool = False,
    ) -> bool:
        self.tenant_of.update(tenant_of)
        self.ids.extend(call_ids)
        self.queues.append(queue)
        return True

    def publish_deliveries(
        self,
        delivery_ids: Sequence[str],
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
    ) -> bool:
        self.tenant_of.update(tenant_of)
        self.delivery_ids.extend(delivery_ids)
        return not self.refuse_deliveries

    def top_up_bulk(self) -> int:
        return 0


@pytest.fixture
def published() -> PublishedIds:
    """Nothing reaches a broker: call ids and webhook deliveries are recorded instead."""
    return PublishedIds()


@pytest.fixture
def settings_of(engine: Engine, encryption_key: str) -> Callable[..., Settings]:
    """Settings for an API on the test database (no Redis answers), with overrides."""

    def of(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": engine.url.render_as_string(hide_password=False),
            "encryption_keys": encryption_key,
            "redis_url": "redis://127.0.0.1:1/0",
            "apps_file": None,
            "upstream_overrides": {},
        }
        return Settings(_env_file=None, **{**values, **overrides})

    return of


@pytest.fixture
def make_app(
    settings_of: Callable[..., Settings], published: PublishedIds
) -> Iterator[Callable[..., FastAPI]]:
    """An app on the test database, built from its settings (overridden by keyword)."""
    made: list[FastAPI] = []

    def make(**settings: Any) -> FastAPI:
        made.append(create_app(settings_of(**settings), publisher=published))
        return made[-1]

    yield make
    for application in made:
        release(application)


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    return make_app()


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    # Not entered as a context manager: the lifespan (a Redis subscription) is not started.
    return TestClient(app)


@dataclass
class Caller:
    """One tenant's view of the API."""

    client: TestClient
    tenant: Tenant
    key: str

    def headers(self, user: str | None = "user-1", **extra: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"}
        if user is not None:
            headers["X-User-ID"] = user
        headers.update(extra)
        return headers

    def connect(
        self, app: str = "slack", user: str = "user-1", token: str = "xoxb-test-token"
    ) -> str:
        response = self.client.post(
            "/connected-accounts",
            json={"app": app, "credentials": {"access_token": token}},
            headers=self.headers(user),
        )
        assert response.status_code == 201, response.text
        account_id: str = response.json()["id"]
        return account_id


@pytest.fixture
def caller(client: TestClient, tenant_and_key: tuple[Tenant, str]) -> Caller:
    tenant, key = tenant_and_key
    return Caller(client, tenant, key)


@pytest.fixture
def make_caller(client: TestClient, engine: Engine) -> Callable[[], Caller]:
    """Another tenant, for isolation tests."""

    def make() -> Caller:
        tenant, key = create_tenant(engine, "other-tenant")
        return Caller(client, tenant, key)

    return make


def submit(
    caller: Caller,
    body: dict[str, Any] | None = None,
    app: str = "slack",
    user: str | None = "user-1",
    idempotency_key: str | None = None,
    prefer: str | None = None,
) -> httpx.Response:
    """`POST /{app}-passthrough-request` with `body` (CALL unless given) for `user`."""
    extra = {}
    if idempotency_key is not None:
        extra["Idempotency-Key"] = idempotency_key
    if prefer is not None:
        extra["Prefer"] = prefer
    response: httpx.Response = caller.client.post(
        f"/{app}-passthrough-request", json=body or CALL, headers=caller.headers(user, **extra)
    )
    return response


def log(caller: Caller, query: str = "") -> dict[str, Any]:
    """A page of the tenant's call log (`GET /function-calls{query}`)."""
    response = caller.client.get(f"/function-calls{query}", headers=caller.headers())
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def finish(
    engine: Engine, call_id: str, code: str | None, status: CallStatus = CallStatus.COMPLETED
) -> None:
    """End a call as a worker would have (its result, not its attempts)."""
    with session_scope(engine) as session:
        session.exec(
            update(FunctionCall)
            .where(col(FunctionCall.id) == call_id)
            .values(status=status, network_code=code)
        )


def deliver_now(
    engine: Engine,
    vault: Vault,
    delivery_id: str,
    at: datetime,
    answer: Callable[[httpx.Request], httpx.Response] = lambda _: httpx.Response(204),
) -> tuple[str, list[httpx.Request]]:
    """Deliver the event as a worker would at `at`, to receivers that answer with `answer`:
    the delivery's status then, and the requests they got."""
    received: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return answer(request)

    runtime = WebhookRuntime(
        engine=engine,
        vault=vault,
        poster=InlinePoster(
            lambda: httpx.AsyncClient(transport=httpx.MockTransport(receiver)), timeout_s=5.0
        ),
        schedule_s=[0.0],
        clock=lambda: at,
        publisher=NoPublisher(),
        lease_s=lease_for(5.0),
    )
    status = deliver([delivery_id], runtime).get(delivery_id, "not due")
    return status, received


def stored_call(engine: Engine, call_id: str) -> FunctionCall:
    """The call's row, as the worker will read it."""
    with session_scope(engine) as session:
        call = session.get(FunctionCall, call_id)
        assert call is not None
        session.expunge(call)
        return call


@dataclass
class ConnectRig:
    """An app whose catalog holds the connect tests' apps, its stand-in token endpoint, and
    a tenant of it."""

    caller: Caller
    tokens: Any  # tests.api.connect_helpers.TokenEndpoint
    app: FastAPI

    def session(
        self, expect: int = 201, user: str | None = "end-user-1", **body: Any
    ) -> httpx.Response:
        """`POST /connect-sessions` with `body` (to the tests' redirect URL unless given)."""
        from tests.api.connect_helpers import REDIRECT

        response: httpx.Response = self.caller.client.post(
            "/connect-sessions",
            json={"redirect_url": REDIRECT, **body},
            headers=self.caller.headers(user),
        )
        assert response.status_code == expect, response.text
        return response


@pytest.fixture
def connect_rig(
    make_app: Callable[..., FastAPI],
    tenant_and_key: tuple[Tenant, str],
    tmp_path: Any,
) -> ConnectRig:
    from tests.api.connect_helpers import PUBLIC, TokenEndpoint, apps_file

    app = make_app(apps_file=apps_file(tmp_path), public_url=PUBLIC)
    tokens = TokenEndpoint()
    app.state.connect.http = tokens.client()
    tenant, key = tenant_and_key
    # Served where its public URL says (https): its cookies are Secure, as they would be.
    return ConnectRig(Caller(TestClient(app, base_url=PUBLIC), tenant, key), tokens, app)


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, so that every client connected to it is the app's."""
    server = start_embedded_redis()
    yield server
    server.stop()


# When the accounts `make_accounts` makes start (the oldest first).
START = datetime(2026, 11, 30, 8, tzinfo=UTC)


def make_accounts(
    engine: Engine,
    tenant: Tenant,
    n: int,
    *,
    app: Callable[[int], str] = lambda i: "slack",
    user: Callable[[int], str] = lambda i: f"user-{i}",
    status: Callable[[int], AccountStatus] = lambda i: AccountStatus.ACTIVE,
    start: datetime = START,
) -> list[str]:
    """`n` accounts of the tenant, each pair made at the same instant (so the id breaks
    ties); their ids newest first, the order a list shows them in."""
    accounts = [
        ConnectedAccount(
            id=new_id("ca"),
            tenant_id=tenant.id,
            app=app(i),
            user_id=user(i),
            status=status(i),
            credentials_enc="not read by a list",
            created_at=start + timedelta(seconds=i // 2),
        )
        for i in range(n)
    ]
    with session_scope(engine) as session:
        session.add_all(accounts)
    return [a.id for a in sorted(accounts, key=lambda a: (a.created_at, a.id), reverse=True)]
