"""The engine a process builds from DATABASE_URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import JSON, Column, Engine, MetaData, Table, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from models.db.engine import create_db_engine, shown
from models.db.ids import new_id


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_a_memory_database_gets_an_engine(url: str) -> None:
    engine = create_db_engine(url, pool_size=1, pool_timeout_s=0.1)
    with engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar_one() == 1
    engine.dispose()


def test_a_checkout_waits_at_most_the_pool_timeout_past_pool_and_overflow(tmp_path: Path) -> None:
    # Given a pool of 1 (and 1 in overflow) whose checkouts wait 0.1 s
    engine = create_db_engine(f"sqlite:///{tmp_path / 'p.db'}", pool_size=1, pool_timeout_s=0.1)
    held = [engine.connect(), engine.connect()]
    # Then a third checkout fails instead of waiting 30 s
    with pytest.raises(PoolTimeout):
        engine.connect()
    for conn in held:
        conn.close()
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "printed"),
    [
        ("postgresql://app:s3cret-pw@db:5432/passthru", "postgresql://app:***@db:5432/passthru"),
        ("sqlite:///./passthru.db", "sqlite:///./passthru.db"),
        ("not a url at all", "(a database URL that could not be parsed)"),
    ],
)
def test_a_database_url_is_printed_without_its_password(url: str, printed: str) -> None:
    assert shown(url) == printed


@pytest.mark.db
@pytest.mark.parametrize(
    "value",
    [5, 1.5, 1.0, -0.0, 18446744073709551615, -(2**63), "5", " 7 ", True, [1.0], {"a": 2}],
    ids=repr,
)
def test_a_json_column_gives_back_exactly_what_was_stored(engine: Engine, value: object) -> None:
    # Given a JSON value that a database could take for a number (SQLite gives a column
    # declared JSON numeric affinity: the text `5` would be stored as the integer 5, and
    # `1.0` as 1)
    probe = Table(f"json_probe_{new_id('t')[-8:].lower()}", MetaData(), Column("v", JSON))
    probe.create(engine)
    try:
        with engine.begin() as conn:
            conn.execute(probe.insert().values(v=value))
        # When read back / Then it is the same value, of the same type
        with engine.connect() as conn:
            got = conn.execute(select(probe.c.v)).scalar_one()
        assert (type(got), got) == (type(value), value)
    finally:
        probe.drop(engine)


@pytest.mark.db
def test_a_statements_error_never_quotes_its_parameters(engine: Engine) -> None:
    # Given a value a statement carries (a credential's ciphertext, say)
    probe = Table(f"quiet_probe_{new_id('t')[-8:].lower()}", MetaData(), Column("v", JSON))
    probe.create(engine)
    try:
        # When the statement fails (its table is gone)
        probe.drop(engine)
        with pytest.raises(DBAPIError) as failed, engine.begin() as conn:
            conn.execute(probe.insert().values(v={"credentials_enc": "gAAAA-secret-cipher"}))
        # Then its error, as logged and in tracebacks, does not hold the value
        assert "gAAAA-secret-cipher" not in str(failed.value)
        assert "hidden due to hide_parameters" in str(failed.value)
    finally:
        probe.drop(engine, checkfirst=True)
