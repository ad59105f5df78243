"""the sweeper's republish reads an index range, not the backlog

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

The sweeper looks every few seconds for queued calls whose publish failed or whose message
has gone unclaimed too long. Without this index, that read grew with the backlog (about
1 s per sweep at 200,000 queued calls on Postgres); with it, about 1 ms at any size.

On Postgres with a large function_call table, building an index holds off writes to the
table for the build's duration. To avoid that, create it first without a lock:
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_call_status_published
        ON function_call (status, published_at, next_attempt_at);
and this migration then finds it there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_call_status_published",
        "function_call",
        ["status", "published_at", "next_attempt_at"],
        unique=False,
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_call_status_published", table_name="function_call")
