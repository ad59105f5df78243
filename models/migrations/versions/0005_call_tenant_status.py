"""calls by tenant and status: the count of a tenant's unfinished calls, the log's status filter

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

On Postgres with a large function_call table, building the index holds off writes to it
for the build's duration. To avoid that, create it first without a lock:
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_call_tenant_status
        ON function_call (tenant_id, status, id);
and this migration then finds it there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_call_tenant_status",
        "function_call",
        ["tenant_id", "status", "id"],
        unique=False,
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_call_tenant_status", table_name="function_call")
