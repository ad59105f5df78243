"""a call's output and response headers stored packed: compact JSON bytes, compressed
when large (models/db/packed.py)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

`function_call.output` and `function_call.response_headers` go from JSON to bytes (bytea on
Postgres, BLOB on SQLite). Each stored value keeps its JSON text, now as UTF-8 bytes (a
JSON `null` becomes NULL); calls written from then on are compressed when that saves
room. Reading is the same for both (`unpack`), so existing rows are not rewritten.

On Postgres the type change rewrites function_call under an exclusive lock: on a large
table, run it in a maintenance window (about the time of a VACUUM FULL of the table).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("output", "response_headers")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE function_call "
            + ", ".join(
                f"ALTER COLUMN {c} TYPE bytea USING "
                f"NULLIF(convert_to({c}::text, 'UTF8'), 'null'::bytea)"
                for c in COLUMNS
            )
        )
        return
    with op.batch_alter_table("function_call") as batch:
        for c in COLUMNS:
            batch.alter_column(c, type_=sa.LargeBinary(), existing_nullable=True)
    for c in COLUMNS:
        op.execute(
            f"UPDATE function_call SET {c} = NULLIF(CAST({c} AS BLOB), CAST('null' AS BLOB))"
            f" WHERE typeof({c}) = 'text'"
        )


def downgrade() -> None:
    # Compressed values are not JSON text: SQL alone cannot turn them back.
    raise NotImplementedError("0012 is not reversible: restore a backup taken before it")
