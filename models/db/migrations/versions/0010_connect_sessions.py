"""hosted connect pages: connect sessions, how an account was connected, account events

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

connect_session holds the single-use links of POST /connect-sessions (their token and each
OAuth2 state only as SHA-256, the PKCE verifier encrypted). connected_account.source says
how an account was connected (`api` for every existing one). webhook_delivery.account_id
names the account of a `connection.created` event.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.db.engine import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connect_session",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("app", sa.String(length=80), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=True),
        sa.Column("redirect_url", sa.Text(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=True),
        sa.Column("connection_config", sa.JSON(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=True),
        sa.Column("browser_hash", sa.String(length=64), nullable=True),
        sa.Column("verifier_enc", sa.Text(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
        sa.UniqueConstraint("state_hash"),
    )
    op.create_index("ix_connect_session_tenant_id", "connect_session", ["tenant_id"])
    with op.batch_alter_table("connected_account") as batch:
        batch.add_column(
            sa.Column("source", sa.String(length=20), nullable=False, server_default="api")
        )
    with op.batch_alter_table("webhook_delivery") as batch:
        batch.add_column(sa.Column("account_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_delivery") as batch:
        batch.drop_column("account_id")
    with op.batch_alter_table("connected_account") as batch:
        batch.drop_column("source")
    op.drop_index("ix_connect_session_tenant_id", table_name="connect_session")
    op.drop_table("connect_session")
