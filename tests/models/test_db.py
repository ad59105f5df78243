"""The engine a process builds from DATABASE_URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from models.db.engine import create_db_engine, shown


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
