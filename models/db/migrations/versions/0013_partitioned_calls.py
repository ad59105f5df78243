"""calls and attempts partitioned by day on Postgres; Idempotency-Keys in a table of their own

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

On both databases: `call_idempotency (tenant_id, idempotency_key) -> call_id` takes over the
uniqueness of `uq_call_idempotency` (a unique constraint on a partitioned table must hold
the partition key, which would make a key unique per call instead of per tenant). It is
filled from the calls that have a key, and the constraint is dropped.

On Postgres, `function_call` becomes partitioned by RANGE (id) and `call_attempt` by RANGE
(call_id), one partition per UTC day (models/db/partitions.py), without rewriting a row:
each table is renamed `<table>_legacy`, a partitioned parent with the same columns and
indexes is made under the old name, and the old table is attached as the partition of
every id before tomorrow (a CHECK constraint proven first, so the ATTACH does not scan
again; each index of the parent finds its twin on the old table and adopts it). An empty
table is dropped instead. Then each table gets its default partition, and today and the
next AHEAD_DAYS days their partitions. The foreign key call_attempt -> function_call is
dropped on Postgres (see docs/architecture.md, "Partitions").

What it costs on a large table: one read of each table to prove the CHECK, under an
exclusive lock (writes to the calls wait for it); no index is built, nothing is copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Connection, text

from models.db.engine import UTCDateTime
from models.db.partitions import AHEAD_DAYS, KEYS, day_bounds, ensure, make_default

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_idempotency",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "idempotency_key"),
    )
    op.create_index("ix_call_idempotency_call_id", "call_idempotency", ["call_id"])
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:  # no call is written from here to the end: every key is copied
        op.execute("LOCK TABLE function_call, call_attempt IN ACCESS EXCLUSIVE MODE")
    op.execute(
        "INSERT INTO call_idempotency (tenant_id, idempotency_key, call_id, created_at)"
        " SELECT tenant_id, idempotency_key, id, created_at FROM function_call"
        " WHERE idempotency_key IS NOT NULL"
    )
    if not postgres:
        with op.batch_alter_table("function_call") as batch:
            batch.drop_constraint("uq_call_idempotency", type_="unique")
        return
    op.execute("ALTER TABLE function_call DROP CONSTRAINT uq_call_idempotency")
    conn = op.get_bind()
    today = datetime.now(UTC).date()
    cutoff = day_bounds(today)[1]  # the old table keeps every id before tomorrow
    newest = conn.execute(text("SELECT max(id) FROM function_call")).scalar()
    if newest is not None and newest >= cutoff:
        raise RuntimeError(f"function_call has ids from after today ({newest}); fix them first")
    conn.execute(text("ALTER TABLE call_attempt DROP CONSTRAINT call_attempt_call_id_fkey"))
    for table, key in KEYS.items():
        _partition(conn, table, key, cutoff if newest is not None else None)
    ensure(conn, today, today + timedelta(days=AHEAD_DAYS))


def _partition(conn: Connection, table: str, key: str, cutoff: str | None) -> None:
    """`table` becomes partitioned by `key`; with a `cutoff`, the old table is its partition
    of every id before it, else (it was empty) it goes."""
    old = f"{table}_legacy"
    indexes = _indexes(conn, table)
    conn.execute(text(f"ALTER TABLE {table} RENAME TO {old}"))
    for name, _ in indexes:
        conn.execute(text(f"ALTER INDEX {name} RENAME TO {_legacy(name, table)}"))
    conn.execute(
        text(
            f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING STORAGE)"
            f" PARTITION BY RANGE ({key})"
        )
    )
    if table == "function_call":
        conn.execute(text("ALTER TABLE function_call ADD PRIMARY KEY (id)"))
        conn.execute(
            text(
                "ALTER TABLE function_call ADD CONSTRAINT function_call_tenant_id_fkey"
                " FOREIGN KEY (tenant_id) REFERENCES tenant (id)"
            )
        )
    for _, definition in indexes:
        if definition is not None:
            conn.execute(text(definition))
    if table == "call_attempt":  # its ids' sequence belongs to the parent from now on
        conn.execute(text("ALTER SEQUENCE call_attempt_id_seq OWNED BY call_attempt.id"))
    if cutoff is None:
        conn.execute(text(f"DROP TABLE {old}"))
    else:
        check = f"{old}_before_0013"
        conn.execute(text(f"ALTER TABLE {old} ADD CONSTRAINT {check} CHECK ({key} < '{cutoff}')"))
        conn.execute(
            text(f"ALTER TABLE {table} ATTACH PARTITION {old} FOR VALUES FROM (MINVALUE) TO ('{cutoff}')")
        )
        conn.execute(text(f"ALTER TABLE {old} DROP CONSTRAINT {check}"))
    make_default(conn, table)


def _legacy(index: str, table: str) -> str:
    return f"{table}_legacy_pkey" if index == f"{table}_pkey" else f"{index}_legacy"


def _indexes(conn: Connection, table: str) -> list[tuple[str, str | None]]:
    """The indexes of `table`: each name, and the statement that makes it on the parent
    (None for the primary key: function_call's parent makes its own, and call_attempt's is
    each partition's)."""
    rows = conn.execute(
        text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"), {"t": table}
    )
    pkey = f"{table}_pkey"
    return [(name, None if name == pkey else sql) for name, sql in rows]


def downgrade() -> None:
    # 0012 cannot be undone either: restore a backup taken before it.
    raise NotImplementedError("0013 is not reversible: restore a backup taken before it")
