"""connected accounts a page at a time: an index for the list and each of its filters

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01

`GET /connected-accounts` (and `GET /rate-limits`, and the console's pages over accounts)
read a tenant's accounts newest first, a page at a time, from a cursor `(created_at, id)`
(`api/account_pages.py: list_accounts`). Before, every account of the tenant was read and
sorted for one answer. Each index here leads with the tenant, and the filter's column for a
filtered list, and ends with `(created_at, id)`: a page is read in order from its cursor
and the read stops once it is full. `ix_account_lookup (tenant_id, app, user_id)` stays:
it finds a user's accounts for an app when a call names no account.

connected_account is not partitioned on either database. On Postgres with many accounts,
building an index holds off writes to the table for the build's duration. To avoid that,
create them first without a lock:
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_account_tenant_created
        ON connected_account (tenant_id, created_at, id);
(and likewise each one below), and this migration then finds them there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_account_tenant_created": ["tenant_id", "created_at", "id"],
    "ix_account_list_app": ["tenant_id", "app", "created_at", "id"],
    "ix_account_list_user": ["tenant_id", "user_id", "created_at", "id"],
    "ix_account_list_status": ["tenant_id", "status", "created_at", "id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "connected_account", columns, unique=False, if_not_exists=True)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="connected_account")
