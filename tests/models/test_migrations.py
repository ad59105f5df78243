"""The migrations build exactly the schema the models declare."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

import models.db.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from models.db.engine import create_db_engine
from models.db.migrate import behind, pending, upgrade


def test_upgrade_matches_models(tmp_path: Path) -> None:
    # Given a fresh SQLite file
    engine = create_db_engine(f"sqlite:///{tmp_path / 'fresh.db'}", pool_size=1)
    try:
        assert pending(engine)
        # When migrated to head
        upgrade(engine)
        # Then nothing is pending and the schema equals the models' metadata
        assert not pending(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, SQLModel.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_upgrade_is_repeatable(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'twice.db'}", pool_size=1)
    try:
        upgrade(engine)
        upgrade(engine)
        assert not pending(engine)
    finally:
        engine.dispose()


def test_behind_means_a_known_migration_is_missing(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        assert behind(engine)  # empty
        upgrade(engine)
        assert not behind(engine)
        with engine.begin() as conn:  # a newer release migrated first
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed9999'"))
        assert not behind(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        assert behind(engine)
    finally:
        engine.dispose()
