"""worker processes and the calls each one holds: leases kept by a heartbeat per process

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

A running call names the worker process that claimed it (`function_call.claimed_by`), and
each process renews one row of `worker_process` every few seconds. When the renewals stop
(the process died), the sweeper takes its calls back within PASSTHRU_LEASE_S, whatever
their onward timeout. Adding a nullable column is instant on Postgres and SQLite alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.db.engine

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_process",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", models.db.engine.UTCDateTime(), nullable=False),
        sa.Column("expires_at", models.db.engine.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("function_call") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("function_call") as batch:
        batch.drop_column("claimed_by")
    op.drop_table("worker_process")
