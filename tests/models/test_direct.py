"""Statements run on the driver's cursor (models/db/direct.py): the values converted by their
types, committed as they run, the pooled connection handed back as it came, and driver
errors raised as SQLAlchemy's; the same statements through SQLAlchemy where SQLite needs
it. Most are Postgres only (the Postgres pass of `make test`)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Engine,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from api.dev.embedded_redis import free_port
from models.db.direct import DirectStatement, OnConnection, driver_connection, statement_runner
from models.db.engine import UTCDateTime, create_db_engine

metadata = MetaData()
items = Table(
    f"direct_test_{secrets.token_hex(3)}",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("at", UTCDateTime()),
    Column("data", JSON),
)

# An INSERT whose status is a constant of the statement and whose other values vary.
ADD = DirectStatement(
    insert(items)
    .values(
        id=bindparam("id"),
        status="new",
        at=bindparam("at", type_=UTCDateTime()),
        data=bindparam("data", type_=JSON),
    )
    .returning(items.c.id, items.c.status, items.c.data)
)
# A statement with an expanding IN of constants, as a state machine's UPDATE has.
COUNT_OPEN = DirectStatement(
    text("SELECT count(*) FROM " + items.name + " WHERE status IN :open AND id = :id").bindparams(
        bindparam("open", value=["new", "sent"], expanding=True)
    )
)


@pytest.fixture
def pg(database_url: str) -> Iterator[Engine]:
    if not database_url.startswith(("postgres://", "postgresql")):
        pytest.skip("Postgres only: set TEST_DATABASE_URL")
    eng = create_db_engine(database_url, pool_size=1)  # one connection: every use shares it
    metadata.create_all(eng)
    yield eng
    metadata.drop_all(eng)
    eng.dispose()


@pytest.mark.db
def test_values_are_converted_by_their_types_and_constants_rendered(pg: Engine) -> None:
    at = datetime(2031, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    rows = ADD.rows(pg, {"id": "a", "at": at, "data": {"k": [1, "x"]}})
    assert rows == [("a", "new", {"k": [1, "x"]})]
    with pg.connect() as conn:
        stored = conn.execute(text(f"SELECT at FROM {items.name} WHERE id = 'a'")).scalar_one()
    # UTCDateTime's own conversion: naive UTC in the column
    assert stored == datetime(2031, 5, 6, 7, 8, 9)
    assert COUNT_OPEN.rows(pg, {"id": "a"}) == [(1,)]
    assert COUNT_OPEN.rows(pg, {"id": "b"}) == [(0,)]


@pytest.mark.db
def test_a_run_is_committed_and_the_connection_goes_back_as_it_came(pg: Engine) -> None:
    ADD.rows(pg, {"id": "c", "at": datetime.now(UTC), "data": None})
    # The same pooled connection (pool_size=1) runs a transaction as usual afterwards: a
    # rollback undoes its write, and the direct run before it stays
    with pg.connect() as conn:
        conn.execute(text(f"INSERT INTO {items.name} (id, status) VALUES ('d', 'new')"))
        conn.rollback()
    with pg.connect() as conn:
        ids = conn.execute(text(f"SELECT id FROM {items.name} ORDER BY id")).scalars().all()
    assert ids == ["c"]


@pytest.mark.db
def test_a_driver_error_is_sqlalchemys_and_the_connection_stays_usable(pg: Engine) -> None:
    ADD.rows(pg, {"id": "e", "at": None, "data": None})
    with pytest.raises(IntegrityError) as failed:
        ADD.rows(pg, {"id": "e", "at": None, "data": {"credentials_enc": "gAAAA-cipher"}})
    assert ADD.rows(pg, {"id": "f", "at": None, "data": None}) == [("f", "new", None)]
    # (and, as the engine's own errors, it never quotes the statement's values)
    assert "gAAAA-cipher" not in str(failed.value)


@pytest.mark.db
def test_a_broken_connection_is_invalidated_not_handed_out_again(pg: Engine) -> None:
    # Given the pool's connection ended by the server (within the second after its last
    # use, so the checkout does not ping it first)
    with pg.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = create_db_engine(pg.url.render_as_string(hide_password=False), pool_size=1)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()
    # When a statement is run on it, the failure is SQLAlchemy's, saying so
    with pytest.raises(OperationalError) as failed:
        ADD.rows(pg, {"id": "g", "at": None, "data": None})
    assert failed.value.connection_invalidated
    # Then the next run gets a new connection
    assert ADD.rows(pg, {"id": "h", "at": None, "data": None}) == [("h", "new", None)]


@pytest.mark.db
def test_an_in_of_the_callers_values_is_refused(pg: Engine) -> None:
    # Its SQL would change with the number of values: a statement of its own each time
    many = DirectStatement(
        text(f"SELECT count(*) FROM {items.name} WHERE id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )
    )
    with pytest.raises(ValueError, match="ids"):
        many.rows(pg, {"ids": ["a", "b"]})


# A statement that returns no rows, and one that reads what it wrote.
ADD_QUIETLY = DirectStatement(insert(items).values(id=bindparam("id"), status="new"))
STATUS_OF = DirectStatement(select(items.c.status).where(items.c.id == bindparam("id")))


@pytest.mark.db
def test_statements_on_one_driver_connection_each_commit_as_they_run(pg: Engine) -> None:
    with driver_connection(pg) as conn:
        assert conn.rows(ADD_QUIETLY, {"id": "i"}) == []  # no rows, not an error
        assert conn.rows(STATUS_OF, {"id": "i"}) == [("new",)]
        with pytest.raises(IntegrityError):
            conn.rows(ADD_QUIETLY, {"id": "i"})
        # The failed one undid nothing before it, and the connection goes on
        assert conn.rows(ADD_QUIETLY, {"id": "j"}) == []
    with pg.connect() as sa_conn:
        ids = sa_conn.execute(text(f"SELECT id FROM {items.name} ORDER BY id")).scalars().all()
    assert ids == ["i", "j"]


@pytest.mark.db
def test_through_sqlalchemy_a_statement_gives_the_same_rows(pg: Engine) -> None:
    values = {"id": "k", "at": None, "data": {"n": 1}}
    with pg.begin() as sa_conn:
        assert OnConnection(sa_conn).rows(ADD, values) == [("k", "new", {"n": 1})]
        assert OnConnection(sa_conn).rows(ADD_QUIETLY, {"id": "l"}) == []
    assert ADD.rows(pg, {**values, "id": "m"}) == [("m", "new", {"n": 1})]


def test_on_sqlite_the_runner_is_one_transaction(tmp_path: Path) -> None:
    # SQLite has no driver path: the runner's statements go through SQLAlchemy, together
    lite = create_db_engine(f"sqlite:///{tmp_path / 'direct.db'}")
    metadata.create_all(lite)
    seen: list[Any] = []

    def add_twice() -> None:
        with statement_runner(lite) as db:
            assert isinstance(db, OnConnection)
            db.rows(ADD_QUIETLY, {"id": "n"})
            seen.extend(tuple(r) for r in db.rows(STATUS_OF, {"id": "n"}))
            db.rows(ADD_QUIETLY, {"id": "n"})

    try:
        with pytest.raises(IntegrityError):
            add_twice()
        assert seen == [("new",)]  # written, then undone with the rest
        with lite.connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {items.name}")).scalar_one() == 0
    finally:
        lite.dispose()


@pytest.mark.db
def test_a_connection_closed_before_its_first_statement_fails_as_sqlalchemys(pg: Engine) -> None:
    # Given a connection that is closed as it leaves the pool
    def close(dbapi_conn: Any, *_: object) -> None:
        dbapi_conn.close()

    event.listen(pg.pool, "checkout", close, once=True)
    # When statements are to run on it, the failure is SQLAlchemy's, and says it is broken
    with pytest.raises(OperationalError) as failed, driver_connection(pg):
        pass
    assert failed.value.connection_invalidated
    # Then the next run gets a new connection
    assert ADD.rows(pg, {"id": "o", "at": None, "data": None}) == [("o", "new", None)]


def test_a_server_that_refuses_the_connection_fails_as_sqlalchemys() -> None:
    # As Engine.connect raises it, so that the API answers 503 and a worker backs off, as
    # for any statement of theirs (not a driver's error that would be a 500)
    refused = create_db_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/none", pool_size=1)
    try:
        with pytest.raises(OperationalError):
            ADD.rows(refused, {"id": "p", "at": None, "data": None})
        with pytest.raises(OperationalError), driver_connection(refused):
            pass
    finally:
        refused.dispose()
