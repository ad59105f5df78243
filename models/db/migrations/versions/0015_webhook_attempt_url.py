"""each webhook attempt keeps the URL it went to

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

A delivery to the tenant's endpoint goes, at each attempt and each redelivery, to the
endpoint's URL at that moment; the delivery keeps only the latest. Each attempt now keeps
its own, so a delivery's history says where every attempt went (before the endpoint was
replaced, say). Attempts stored before this have none (null). Adding a nullable column
rewrites nothing on either database.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_attempt") as batch:
        batch.add_column(sa.Column("url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_attempt") as batch:
        batch.drop_column("url")
