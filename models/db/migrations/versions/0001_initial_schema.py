"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.db.engine


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "tenant",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("api_key_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("api_key_prefix", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", models.db.engine.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("api_key_hash"),
    )
    op.create_table(
        "connected_account",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("app", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("credentials_enc", sa.Text(), nullable=False),
        sa.Column("connection_config", sa.JSON(), nullable=True),
        sa.Column("created_at", models.db.engine.UTCDateTime(), nullable=False),
        sa.Column("updated_at", models.db.engine.UTCDateTime(), nullable=False),
        sa.Column("last_used_at", models.db.engine.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("connected_account", schema=None) as batch_op:
        batch_op.create_index("ix_account_lookup", ["tenant_id", "app", "user_id"], unique=False)

    op.create_table(
        "function_call",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("app", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("function", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column(
            "connected_account_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column("batch_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("method", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("request_headers", sa.JSON(), nullable=True),
        sa.Column("request_body", sa.JSON(), nullable=True),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("network_code", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("output_truncated", sa.Boolean(), nullable=False),
        sa.Column("response_headers", sa.JSON(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", models.db.engine.UTCDateTime(), nullable=True),
        sa.Column("next_attempt_at", models.db.engine.UTCDateTime(), nullable=True),
        sa.Column("published_at", models.db.engine.UTCDateTime(), nullable=True),
        sa.Column("created_at", models.db.engine.UTCDateTime(), nullable=False),
        sa.Column("started_at", models.db.engine.UTCDateTime(), nullable=True),
        sa.Column("finished_at", models.db.engine.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_call_idempotency"),
    )
    with op.batch_alter_table("function_call", schema=None) as batch_op:
        batch_op.create_index("ix_call_status_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_call_tenant_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_function_call_batch_id"), ["batch_id"], unique=False)

    op.create_table(
        "call_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", models.db.engine.UTCDateTime(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("network_code", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["function_call.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("call_attempt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_call_attempt_call_id"), ["call_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("call_attempt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_attempt_call_id"))

    op.drop_table("call_attempt")
    with op.batch_alter_table("function_call", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_function_call_batch_id"))
        batch_op.drop_index("ix_call_tenant_id")
        batch_op.drop_index("ix_call_status_due")

    op.drop_table("function_call")
    with op.batch_alter_table("connected_account", schema=None) as batch_op:
        batch_op.drop_index("ix_account_lookup")

    op.drop_table("connected_account")
    op.drop_table("tenant")
