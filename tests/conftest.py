"""Shared fixtures: a real database (SQLite, or Postgres when TEST_DATABASE_URL is set),
migrated once per session; each test makes its own tenant, so tests never share data."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Connection, Engine, Table, insert, text

from api.dev import harness
from api.dev.embedded_redis import EmbeddedRedis, start_embedded_redis
from models.accounts.tenants import create_tenant
from models.catalog.apps import Catalog, load_catalog
from models.crypto.secrets import Vault, generate_encryption_key
from models.db.direct import DirectStatement, DriverConnection, Rendered
from models.db.engine import create_db_engine
from models.db.migrate import upgrade
from models.db.tables import Tenant
from tests.browser import browser, visit

# The browser fixtures (tests/console, tests/e2e), each of which needs an `origin` fixture.
__all__ = ["browser", "visit"]

os.environ.setdefault("PASSTHRU_ENV", "test")


def new_database(folder: Path) -> AbstractContextManager[str]:
    """The URL of a new, empty database: on TEST_DATABASE_URL's server, or a SQLite file in
    `folder`."""
    return harness.new_database(folder, os.environ.get("TEST_DATABASE_URL"))


@contextmanager
def two_tenants_rows(
    folder: Path,
    table: Table,
    rows_of: Callable[[str], list[dict[str, Any]]],
    before: Callable[[Connection], None] = lambda conn: None,
) -> Iterator[tuple[Engine, Tenant]]:
    """A migrated database of its own in which a tenant and a neighbour each hold
    `rows_of(tenant_id)` in `table` (`before` runs first, in the same transaction),
    ANALYZEd on Postgres: for the plan tests, whose plans depend on every row in it. Yields
    the engine and the first tenant."""
    with new_database(folder) as url:
        engine = create_db_engine(url)
        try:
            upgrade(engine)
            tenant, _ = create_tenant(engine, "busy")
            other, _ = create_tenant(engine, "neighbour")
            with engine.begin() as conn:
                before(conn)
                for owner in (tenant, other):
                    conn.execute(insert(table), rows_of(owner.id))
            if engine.dialect.name == "postgresql":
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text(f"ANALYZE {table.name}"))
            yield engine, tenant
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of this test session's own."""
    with new_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def own_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated database of the test's own, for tests that look at every row (most tests
    share one database and make their own tenant instead)."""
    with new_database(tmp_path) as url:
        eng = create_db_engine(url)
        upgrade(eng)
        try:
            yield eng
        finally:
            eng.dispose()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_db_engine(database_url, pool_size=5)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def encryption_key() -> str:
    return generate_encryption_key()


@pytest.fixture(scope="session")
def vault(encryption_key: str) -> Vault:
    return Vault([encryption_key])


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A real redis-server of the test run's own, on a free port (flush it at will)."""
    server = start_embedded_redis()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    """A client of `redis_server`, its database emptied first."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def tenant_and_key(engine: Engine) -> tuple[Tenant, str]:
    return create_tenant(engine, f"tenant-{secrets.token_hex(3)}")


@pytest.fixture
def tenant(tenant_and_key: tuple[Tenant, str]) -> Tenant:
    return tenant_and_key[0]


# Markers of tests that run in the first (SQLite) pass only.
RUN_ONCE = frozenset({"browser", "once"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that touches the database also runs in the Postgres pass (`-m db`), except
    the browser tests (what they add over the console's HTTP tests is the browser) and those
    marked `once`."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if RUN_ONCE & set(item.keywords):
            continue
        if "engine" in fixtures or "own_engine" in fixtures or "e2e" in item.keywords:
            item.add_marker(pytest.mark.db)


DirectRun = Callable[[DriverConnection, Rendered, dict[str, Any]], None]


def on_direct_runs(monkeypatch: pytest.MonkeyPatch, seen: DirectRun) -> None:
    """Call `seen` with each statement run on the driver's cursor (models/db/direct.py),
    past SQLAlchemy's events, as sent and just before it runs: its connection, the
    statement as rendered and its parameters."""
    run = DriverConnection.rows

    def recorded(
        conn: DriverConnection, statement: DirectStatement, values: Mapping[str, Any]
    ) -> list[Any]:
        rendered = statement.rendered(conn.dialect)
        seen(conn, rendered, rendered.parameters(values))
        return run(conn, statement, values)

    monkeypatch.setattr(DriverConnection, "rows", recorded)


@pytest.fixture
def direct_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Each statement run on the driver's cursor: its SQL and its number of parameters."""
    runs: list[tuple[str, int]] = []
    on_direct_runs(monkeypatch, lambda _, sent, params: runs.append((sent.sql, len(params))))
    return runs
