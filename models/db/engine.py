"""Database engine and sessions. One engine per process, made by a factory tests can call."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Session, create_engine

from models.settings import Settings, get_settings


def normalize_database_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` and use the psycopg 3 driver for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def shown(url: str) -> str:
    """A database URL fit to print: its password, if any, masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a database URL that could not be parsed)"


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


_loads = orjson.loads  # (bound once: a test watching the API's parses patches orjson's)


def _sqlite_json_loads(value: Any) -> Any:
    """A JSON column's value on SQLite, which may hold a number where JSON text was meant
    (rows written before JSON was stored as bytes there)."""
    return value if isinstance(value, int | float) else _loads(value)


# JSON columns (bodies, outputs, headers) are hot: orjson both ways. SQLite gives a column
# declared JSON numeric affinity, and turns JSON text that reads as a number (`5`, `1.0`,
# 2**64 - 1) into an integer or a float: there it is stored as bytes, which it keeps as
# they are.
_JSON = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
_SQLITE_JSON = {"json_serializer": orjson.dumps, "json_deserializer": _sqlite_json_loads}
# A statement's error never quotes its parameters: they hold request bodies and headers,
# outputs and credentials' ciphertexts, and its text reaches logs and tracebacks.
_QUIET = {"hide_parameters": True}


def create_db_engine(url: str, *, pool_size: int = 20, pool_timeout_s: float = 10.0) -> Engine:
    """A process's engine: up to `pool_size` connections kept, as many again in overflow;
    a checkout waits at most `pool_timeout_s` (then sqlalchemy.exc.TimeoutError)."""
    url = normalize_database_url(url)
    pool: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": pool_size,
        "pool_timeout": pool_timeout_s,
        # The connection used last goes out first: busy ones stay hot (no ping, see below)
        # and the rest sit idle.
        "pool_use_lifo": True,
    }
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            pool = {}  # one connection, kept by SQLAlchemy's own pool for memory databases
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            **pool,
            **_SQLITE_JSON,
            **_QUIET,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, **pool, **_JSON, **_QUIET)
    _ping_when_idle(engine)
    return engine


# A pooled connection used within this long is trusted without a ping.
PING_AFTER_IDLE_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's `pool_pre_ping`, but only for connections idle PING_AFTER_IDLE_S or
    more: a ping is a round trip, and a busy process checks a connection out several times
    per call. A database restarted while a process was idle costs it nothing; one restarted
    within a second of a connection's use fails that one use, and SQLAlchemy then discards
    every older connection of the pool (the first failure tells it the server restarted)."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            alive = dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("the pooled connection did not answer a ping") from exc
        if not alive:
            raise DisconnectionError("the pooled connection did not answer a ping")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def engine_for(settings: Settings) -> Engine:
    """A new engine for the settings' DATABASE_URL and pool."""
    return create_db_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        pool_timeout_s=settings.db_pool_timeout_s,
    )


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    """The process's engine, for the environment's settings (the worker, the CLI)."""
    return engine_for(get_settings())


@contextmanager
def _autocommit(engine: Engine) -> Iterator[Connection]:
    """A pooled connection whose statements each commit as they run (Postgres)."""
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


@contextmanager
def single_write(engine: Engine) -> Iterator[Connection]:
    """A connection for work whose one write is a single statement: on Postgres each
    statement commits as it runs (autocommit), which saves two round trips (psycopg sends
    BEGIN as a round trip of its own, and COMMIT is another), equally durable; on SQLite,
    in process, one transaction as usual."""
    postgres = engine.dialect.name == "postgresql"
    with _autocommit(engine) if postgres else engine.begin() as conn:
        yield conn


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for reads that need no snapshot across statements: on Postgres each
    statement runs alone (autocommit), so no BEGIN and no ROLLBACK go to the server, and
    the connection keeps its prepared statements (psycopg drops them all on every
    rollback of a transaction); on SQLite, a connection as usual."""
    postgres = engine.dialect.name == "postgresql"
    with _autocommit(engine) if postgres else engine.connect() as conn:
        yield conn


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session on `read_connection`, its objects kept readable after it closes."""
    with read_connection(engine) as conn, Session(bind=conn, expire_on_commit=False) as session:
        yield session


@contextmanager
def single_write_session(engine: Engine) -> Iterator[Session]:
    """`session_scope` for work whose one write is a single statement, on `single_write`'s
    connection on Postgres."""
    if engine.dialect.name != "postgresql":
        with session_scope(engine) as session:
            yield session
        return
    with single_write(engine) as conn, Session(bind=conn, expire_on_commit=False) as session:
        yield session


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """`value` in UTC; a datetime without a zone is taken as UTC. ValueError when the moment
    has no UTC form (0001-01-01T00:00+01:00 falls before year 1)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside years 1 to 9999 once in UTC") from None


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC, on SQLite and Postgres alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)
