"""Schema migrations (Alembic), run by `passthru migrate` and at `passthru dev` start."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

from models.db.engine import normalize_database_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_database_url(database_url))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the latest revision. On SQLite, foreign keys are not enforced
    meanwhile: a batch migration rebuilds a table other rows refer to (function_call, by
    its attempts), which SQLite would refuse to drop. The pragma means nothing inside a
    transaction, so it is set before and after one."""
    cfg = alembic_config(str(engine.url))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    """The revisions this code ships (read once: the readiness probe asks often)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def _current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def behind(engine: Engine) -> bool:
    """True if the database lacks a migration this code knows. A database migrated further
    (a newer release's migration ran first) is not behind: old code keeps serving during a
    rolling deploy."""
    current = _current(engine)
    if current is None:
        return True
    try:
        _scripts().get_revision(current)
    except CommandError:
        return False  # a revision from a newer release
    return current != _scripts().get_current_head()


def pending(engine: Engine) -> bool:
    """True if the database is not at the latest revision."""
    return _current(engine) != _scripts().get_current_head()
