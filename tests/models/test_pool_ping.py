"""A pooled connection is pinged at checkout only after it sat idle (models/db/engine.py):
a server that dropped its connections costs an idle process nothing, and a busy one at most
one failed use. Postgres only (the Postgres pass of `make test`): SQLite has no server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from models.db import engine as engine_module
from models.db.engine import create_db_engine


@pytest.fixture
def pg(database_url: str) -> Iterator[Engine]:
    if not database_url.startswith(("postgres://", "postgresql")):
        pytest.skip("Postgres only: set TEST_DATABASE_URL")
    eng = create_db_engine(database_url, pool_size=1)
    yield eng
    eng.dispose()


def backend_pid(eng: Engine) -> int:
    with eng.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def drop_connection(eng: Engine, pid: int) -> None:
    """What a server restart does to a pooled connection: the server ends it."""
    other = create_db_engine(str(eng.url.render_as_string(hide_password=False)), pool_size=1)
    with other.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        conn.commit()
    other.dispose()


@pytest.mark.db
def test_an_idle_connection_the_server_dropped_is_replaced_unseen(
    pg: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pooled connection the server has dropped, idle long enough to be pinged
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 0.0)
    pid = backend_pid(pg)
    drop_connection(pg, pid)
    # When it is checked out again, the ping finds it dead and a new one is used
    assert backend_pid(pg) != pid


@pytest.mark.db
def test_a_connection_used_just_now_is_not_pinged_and_fails_once(
    pg: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a connection used a moment ago (no ping), dropped by the server meanwhile
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 3600.0)
    pid = backend_pid(pg)
    drop_connection(pg, pid)
    # When it is used, that one use fails
    with pytest.raises(OperationalError), pg.connect() as conn:
        conn.execute(text("SELECT 1"))
    # and the pool then knows: the next use gets a new connection
    assert backend_pid(pg) != pid
