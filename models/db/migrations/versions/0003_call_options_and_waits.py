"""a call's own retry and timeout params; rate-limit waits

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("function_call", schema=None) as batch_op:
        batch_op.add_column(sa.Column("options", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("rate_wait", sa.JSON(), nullable=True))
    with op.batch_alter_table("call_attempt", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_wait_ms", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "rate_wait_reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("call_attempt", schema=None) as batch_op:
        batch_op.drop_column("rate_wait_reason")
        batch_op.drop_column("rate_wait_ms")
    with op.batch_alter_table("function_call", schema=None) as batch_op:
        batch_op.drop_column("rate_wait")
        batch_op.drop_column("options")
