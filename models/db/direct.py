"""A Core statement of a hot path, run on a pooled connection's driver connection (psycopg).

Through a SQLAlchemy `Connection`, each run of a statement makes a connection object, an
execution context, a cursor result and its rows, and looks the compiled statement up in
its cache. The claim of one call, measured alone, took 1.05 ms of CPU that way and 0.53 ms
this way (docs/performance.md), and an interactive call's claim waits on every bit of it.

SQLAlchemy still writes the statement: it is compiled once per dialect, its constants
(statuses, say) rendered and converted then, and each run converts only the values the
caller gives, with the types' own converters. The connection comes from the engine's pool,
checked out as any other (with its ping after idling), runs in autocommit (each statement
commits as it runs: `models.db.engine.single_write`) and goes back in the state it came
in. A driver error is raised as SQLAlchemy's (`sqlalchemy.exc.DBAPIError.instance`), so
callers catch what they catch elsewhere; a connection the error shows broken is invalidated
rather than handed out again.

Code that runs on both databases takes a `StatementRunner`: a `DriverConnection` on
Postgres, `OnConnection` (a SQLAlchemy `Connection`, as SQLite needs) otherwise.
`statement_runner` opens the one the engine wants, for work whose one write is a single
statement.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from models.db.engine import single_write

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Rendered:
    """A statement as the driver is sent it, and how its parameters are made."""

    sql: str
    constants: dict[str, Any]  # converted once
    processors: dict[str, Processor | None]  # the caller's values, by name

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        params = dict(self.constants)
        for name, processor in self.processors.items():
            value = values[name]
            params[name] = value if processor is None else processor(value)
        return params


class DirectStatement:
    """`statement`, run with a value for each of its bind parameters that has none of its
    own (the others are its constants): on the driver's cursor (Postgres only), or through
    SQLAlchemy by `OnConnection`."""

    def __init__(self, statement: ClauseElement) -> None:
        self._statement = statement
        self._rendered: dict[int, Rendered] = {}
        self._lock = threading.Lock()

    @property
    def statement(self) -> ClauseElement:
        """The statement as SQLAlchemy runs it (`OnConnection`)."""
        return self._statement

    def rows(self, engine: Engine, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run the statement with `values` (one for each parameter without a value of its
        own) on a connection of its own, committed as it runs; its rows, as the driver
        decoded them (JSON as Python values, enums as their strings)."""
        with driver_connection(engine) as conn:
            return conn.rows(self, values)

    def rendered(self, dialect: Dialect) -> Rendered:
        """The statement compiled for `dialect`, once."""
        key = id(dialect)
        if (rendered := self._rendered.get(key)) is not None:
            return rendered
        with self._lock:
            if (rendered := self._rendered.get(key)) is None:
                rendered = self._rendered[key] = _render(self._statement, dialect)
        return rendered


class StatementRunner(Protocol):
    """Runs a `DirectStatement` on one connection; its rows."""

    def rows(self, statement: DirectStatement, values: Mapping[str, Any]) -> Sequence[Any]: ...


class DriverConnection:
    """A pooled connection's driver connection, in autocommit (`driver_connection`)."""

    def __init__(self, dialect: Dialect, pooled: PoolProxiedConnection) -> None:
        self.dialect = dialect  # the engine's
        self._pooled = pooled

    def rows(self, statement: DirectStatement, values: Mapping[str, Any]) -> list[Any]:
        """Run `statement` with `values`, committed as it runs; its rows as the driver
        decoded them (none for a statement that returns none)."""
        rendered = statement.rendered(self.dialect)
        params = rendered.parameters(values)
        try:
            with self._pooled.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
                cursor.execute(rendered.sql, params)
                if cursor.description is None:
                    return []
                rows: list[Any] = cursor.fetchall()
                return rows
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._failed(exc, rendered.sql, params) from exc

    def autocommit(self, on: bool) -> None:
        """Each statement committed as it runs, or not (left alone on a broken connection,
        which goes back to the pool invalidated)."""
        driver: Any = self._pooled.driver_connection  # None once invalidated
        if not on and (driver is None or driver.broken):
            return
        try:
            driver.autocommit = on
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._failed(exc, f"(autocommit {'on' if on else 'off'})", {}) from exc

    def _failed(self, exc: Any, sql: str, params: dict[str, Any]) -> StatementError:
        """`exc` as SQLAlchemy raises it; the connection invalidated if it is broken."""
        broken = self.dialect.is_disconnect(exc, self._pooled.dbapi_connection, None)
        if broken:
            self._pooled.invalidate(exc)
        return _as_sqlalchemys(exc, self.dialect, sql, params, broken=broken)


def _as_sqlalchemys(
    exc: Any, dialect: Dialect, sql: str | None, params: dict[str, Any] | None, *, broken: bool
) -> StatementError:
    """The driver's error `exc` as SQLAlchemy raises it (`OperationalError`, say)."""
    error: StatementError = DBAPIError.instance(
        sql,
        params,
        exc,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,  # as the engines do (models/db/engine.py)
        connection_invalidated=broken,
        dialect=dialect,
    )
    return error


@contextmanager
def driver_connection(engine: Engine) -> Iterator[DriverConnection]:
    """A connection of `engine`'s pool (Postgres), each statement committed as it runs;
    back to the pool as it came (out of autocommit) when done. A connection the server
    refuses fails as SQLAlchemy's error, as `Engine.connect` makes it."""
    dialect = engine.dialect
    try:
        pooled = engine.raw_connection()
    except dialect.loaded_dbapi.Error as exc:  # a new connection refused: the pool's own
        broken = dialect.is_disconnect(exc, None, None)
        raise _as_sqlalchemys(exc, dialect, None, None, broken=broken) from exc
    try:
        conn = DriverConnection(dialect, pooled)
        conn.autocommit(True)
        try:
            yield conn
        finally:
            conn.autocommit(False)
    finally:
        pooled.close()


@dataclass(frozen=True, slots=True)
class OnConnection:
    """Runs statements through a SQLAlchemy connection, in its transaction."""

    connection: Connection

    def rows(self, statement: DirectStatement, values: Mapping[str, Any]) -> Sequence[Any]:
        result = self.connection.execute(cast(Executable, statement.statement), dict(values))
        return result.all() if result.returns_rows else []


@contextmanager
def statement_runner(engine: Engine) -> Iterator[StatementRunner]:
    """For work whose one write is a single statement: a `DriverConnection` on Postgres;
    on SQLite, one transaction (`models.db.engine.single_write`)."""
    if engine.dialect.name == "postgresql":
        with driver_connection(engine) as conn:
            yield conn
    else:
        with single_write(engine) as sa_conn:
            yield OnConnection(sa_conn)


def _render(statement: ClauseElement, dialect: Dialect) -> Rendered:
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    varying = {name for name, bind in compiled.binds.items() if bind.required}
    expanding = sorted(name for name in varying if compiled.binds[name].expanding)
    if expanding:  # an IN of the caller's values: its SQL would differ with their number
        raise ValueError(f"an expanding parameter needs a value of its own: {expanding}")
    state = compiled.construct_expanded_state(dict.fromkeys(varying))
    constants: dict[str, Any] = {}
    processors: dict[str, Processor | None] = {}
    for name, value in state.parameters.items():
        processor = _processor(compiled, name, dialect)
        if name in varying:
            processors[name] = processor
        else:
            constants[name] = value if processor is None else processor(value)
    return Rendered(state.statement, constants, processors)


def _processor(compiled: SQLCompiler, name: str, dialect: Dialect) -> Processor | None:
    """The type's converter for parameter `name`; an expanded IN's items (`name_1`,
    `name_2`, ...) take their list's."""
    binds = compiled.binds
    bind = binds[name] if name in binds else binds[name.rsplit("_", 1)[0]]
    processor: Processor | None = bind.type.bind_processor(dialect)
    return processor
