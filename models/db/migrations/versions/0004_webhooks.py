"""webhooks: endpoints, deliveries, attempts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.db.engine

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "webhook_endpoint",
        sa.Column("tenant_id", _S(length=40), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("secrets_enc", sa.Text(), nullable=False),
        sa.Column("disabled_at", models.db.engine.UTCDateTime(), nullable=True),
        sa.Column("disabled_reason", _S(length=200), nullable=True),
        sa.Column("created_at", models.db.engine.UTCDateTime(), nullable=False),
        sa.Column("updated_at", models.db.engine.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_table(
        "webhook_delivery",
        sa.Column("id", _S(length=48), nullable=False),
        sa.Column("tenant_id", _S(length=40), nullable=False),
        sa.Column("call_id", _S(length=40), nullable=True),
        sa.Column("batch_id", _S(length=40), nullable=True),
        sa.Column("event", _S(length=60), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("to_endpoint", sa.Boolean(), nullable=False),
        sa.Column("status", _S(length=20), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", models.db.engine.UTCDateTime(), nullable=True),
        sa.Column("published_at", models.db.engine.UTCDateTime(), nullable=True),
        sa.Column("lease_expires_at", models.db.engine.UTCDateTime(), nullable=True),
        sa.Column("created_at", models.db.engine.UTCDateTime(), nullable=False),
        sa.Column("finished_at", models.db.engine.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_status_due", ["status", "next_attempt_at"])
        batch_op.create_index(batch_op.f("ix_webhook_delivery_call_id"), ["call_id"])
        batch_op.create_index(batch_op.f("ix_webhook_delivery_tenant_id"), ["tenant_id"])
    op.create_table(
        "webhook_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", _S(length=48), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", models.db.engine.UTCDateTime(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", _S(length=200), nullable=True),
        sa.Column("decision", _S(length=200), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhook_delivery.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_attempt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_attempt_delivery_id"), ["delivery_id"])


def downgrade() -> None:
    op.drop_table("webhook_attempt")
    op.drop_table("webhook_delivery")
    op.drop_table("webhook_endpoint")
