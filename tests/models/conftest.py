"""Fixtures of the migration tests: a database with no schema yet, migrated step by step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine

from models.db.engine import create_db_engine
from models.db.migrate import alembic_config
from tests.conftest import new_database


@pytest.fixture
def unmigrated(tmp_path: Path) -> Iterator[Engine]:
    """A new, empty database of the test's own (no schema yet)."""
    with new_database(tmp_path) as url:
        engine = create_db_engine(url, pool_size=2)
        try:
            yield engine
        finally:
            engine.dispose()


def migrate_to(engine: Engine, revision: str) -> None:
    """The schema as it was at `revision`."""
    cfg = alembic_config(str(engine.url))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
