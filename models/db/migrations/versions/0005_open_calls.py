"""a tenant's unfinished calls: a partial index, for the bound on them

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Only calls not yet finished are in it, so it stays as small as the bound it serves
(PASSTHRU_TENANT_MAX_OPEN_CALLS per tenant) and a call's last update adds nothing to it.

On Postgres with a large function_call table, building an index holds off writes to the
table for the build's duration. To avoid that, create it first without a lock:
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_call_tenant_open ON function_call (tenant_id)
        WHERE status IN ('queued', 'running', 'retrying');
and this migration then finds it there.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = sa.text("status IN ('queued', 'running', 'retrying')")


def upgrade() -> None:
    op.create_index(
        "ix_call_tenant_open",
        "function_call",
        ["tenant_id"],
        unique=False,
        if_not_exists=True,
        postgresql_where=UNFINISHED,
        sqlite_where=UNFINISHED,
    )


def downgrade() -> None:
    op.drop_index("ix_call_tenant_open", table_name="function_call")
