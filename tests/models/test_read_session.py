"""Reads that need no snapshot across statements (models/db/engine.py `read_session`): on
Postgres they send no BEGIN and no ROLLBACK, so the connection keeps the statements psycopg
prepared for it, which a rolled-back read transaction makes it drop. Postgres only (the
Postgres pass of `make test`); on SQLite they are plain sessions, used by every API test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from models.db.engine import create_db_engine, read_connection, read_session

QUERY = text("SELECT count(*) FROM pg_class WHERE relname = :name")
# psycopg prepares a statement run this many times on one connection (its default).
PREPARE_AFTER = 5


@pytest.fixture
def pg(database_url: str) -> Iterator[Engine]:
    if not database_url.startswith(("postgres://", "postgresql")):
        pytest.skip("Postgres only: set TEST_DATABASE_URL")
    eng = create_db_engine(database_url, pool_size=1)  # one connection: every read shares it
    yield eng
    eng.dispose()


def prepared_on_server(eng: Engine) -> int:
    with read_connection(eng) as conn:
        return int(conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one())


@pytest.mark.db
def test_reads_keep_the_connections_prepared_statements(pg: Engine) -> None:
    # Given the same read run often enough for psycopg to prepare it
    for _ in range(PREPARE_AFTER + 2):
        with read_session(pg) as session:
            assert session.execute(QUERY, {"name": "pg_class"}).scalar_one() == 1
    # Then the server still holds it prepared once the reads are done
    assert prepared_on_server(pg) >= 1


@pytest.mark.db
def test_a_read_transaction_would_have_dropped_them(pg: Engine) -> None:
    # The reason for read_session: a plain session's read ends in a ROLLBACK, after which
    # psycopg deallocates everything the connection had prepared
    for _ in range(PREPARE_AFTER + 2):
        with read_session(pg) as session:
            session.execute(QUERY, {"name": "pg_class"})
    assert prepared_on_server(pg) >= 1
    with Session(pg) as session:
        session.execute(QUERY, {"name": "pg_class"})
    assert prepared_on_server(pg) == 0


@pytest.mark.db
def test_a_read_session_sees_what_others_committed_since_its_last_statement(pg: Engine) -> None:
    # Each statement is its own snapshot (autocommit): nothing is held between them
    with pg.begin() as conn:
        conn.execute(text("CREATE TABLE read_probe (n int)"))
    try:
        with read_session(pg) as session:
            assert session.execute(text("SELECT count(*) FROM read_probe")).scalar_one() == 0
            other = create_db_engine(pg.url.render_as_string(hide_password=False), pool_size=1)
            with other.begin() as conn:
                conn.execute(text("INSERT INTO read_probe VALUES (1)"))
            other.dispose()
            assert session.execute(text("SELECT count(*) FROM read_probe")).scalar_one() == 1
    finally:
        with pg.begin() as conn:
            conn.execute(text("DROP TABLE read_probe"))
