"""the console's last hour and its batch pages read index ranges

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

The console's "Last hour" page counts a tenant's calls of the last 60 minutes per minute
and status, and joins them to their attempts for the latency percentiles. Without
ix_call_tenant_created that read had only (tenant_id, id) or the open-calls index to go
by, and scanned every call the tenant ever made; with it, it reads the hour's range of the
index, and the count needs no table row (status is in the index). ix_batch_tenant_created
lets the batches page seek to a cursor (created_at, id) instead of sorting all of a
tenant's batches for every page.

On Postgres with a large function_call table, building an index holds off writes to the
table for the build's duration. To avoid that, create them first without a lock:
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_call_tenant_created
        ON function_call (tenant_id, created_at, status);
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_batch_tenant_created
        ON batch (tenant_id, created_at, id);
and this migration then finds them there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# (name, table, columns) of the indexes this migration adds.
INDEXES = (
    ("ix_call_tenant_created", "function_call", ["tenant_id", "created_at", "status"]),
    ("ix_batch_tenant_created", "batch", ["tenant_id", "created_at", "id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False, if_not_exists=True)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
