"""the log's indexes on nullable columns hold only the calls that have a value

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

Most calls come alone (no batch_id), and a call waiting or failed has no network_code; an
index entry costs about 100 bytes a call (tenant id, value, call id). The indexes that
serve `batch_id = ?` and `network_code = ?` (the log's filters, a batch's calls) are
partial: `WHERE <column> IS NOT NULL`, which those equalities imply, so the same queries
read them (tests/api/test_log_plans.py). With 30% of calls in batches, about 75 bytes a
call less (docs/performance.md, "The log at scale").

Each index is dropped and built again; on Postgres with a large function_call table the
build holds off writes for its duration. To avoid that, build the partial index under a
new name with CREATE INDEX CONCURRENTLY, drop the old one (DROP INDEX CONCURRENTLY), rename
the new one, then stamp this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name -> (columns, the nullable column the index is restricted to)
INDEXES = {
    "ix_call_log_batch": (["tenant_id", "batch_id", "id"], "batch_id"),
    "ix_function_call_batch_id": (["batch_id"], "batch_id"),
    "ix_call_log_network_code": (["tenant_id", "network_code", "id"], "network_code"),
}


def upgrade() -> None:
    for name, (columns, column) in INDEXES.items():
        op.drop_index(name, table_name="function_call")
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            name, "function_call", columns, postgresql_where=where, sqlite_where=where
        )


def downgrade() -> None:
    for name, (columns, _) in INDEXES.items():
        op.drop_index(name, table_name="function_call")
        op.create_index(name, "function_call", columns)
