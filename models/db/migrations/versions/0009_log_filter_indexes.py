"""the Function Calls log: an index for each filter, newest first

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

`api/call_log.py: list_calls` reads a tenant's calls newest first (ORDER BY id DESC, the
cursor being the last id seen). Unfiltered, `ix_call_tenant_id (tenant_id, id)` serves it.
Filtered, that index was walked and every call of the tenant tested, so a filter that
matched little (a user, a batch, a rare status or network code) read most of the tenant's
calls before its page was full (at 20,000 calls, Postgres chose a bitmap scan of all of
them and a sort for a user). Each index here leads with the tenant and the filter's column, and ends with the id:
an equality filter reads its page in order and stops (docs/console.md, "Speed").

The time range (since, until) needs no index of its own: list_calls reads it as a range of
ids (time-ordered) on ix_call_tenant_id. An index on (tenant_id, created_at) was measured
and left out: Postgres did not use it, and SQLite (never ANALYZEd) did, then sorted every
call since `since` for their newest 50 (45 ms against 7 ms for `since` = 20 hours ago, at
20,000 calls).

On Postgres with a large function_call table, building an index holds off writes to the
table for the build's duration. To avoid that, create them first without a lock:
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_call_log_app ON function_call (tenant_id, app, id);
(and likewise each one below), and this migration then finds them there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_call_log_app": ["tenant_id", "app", "id"],
    "ix_call_log_status": ["tenant_id", "status", "id"],
    "ix_call_log_user": ["tenant_id", "user_id", "id"],
    "ix_call_log_batch": ["tenant_id", "batch_id", "id"],
    "ix_call_log_network_code": ["tenant_id", "network_code", "id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "function_call", columns, unique=False, if_not_exists=True)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="function_call")
