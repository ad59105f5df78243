"""The tables. Secrets are stored only hashed (API keys) or encrypted (credentials)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Text, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from models.accounts.states import AccountStatus
from models.calls.states import CallStatus
from models.db.engine import UTCDateTime, utcnow
from models.db.packed import PackedJSON
from models.webhooks.states import DeliveryStatus

# The statuses of a call not yet finished, as SQL (a partial index's predicate must be
# written the same way in the queries that use it).
UNFINISHED_SQL = "status IN ('queued', 'running', 'retrying')"


class StatusType(TypeDecorator[StrEnum]):
    """A status stored as its plain string value, read back as its enum (CallStatus, ...).
    A plain string is stored as it is: a filter on a status no row has matches nothing."""

    impl = String(20)
    cache_ok = True

    def __init__(self, enum: type[StrEnum]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: StrEnum | str | None, dialect: Any) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Any) -> StrEnum | None:
        return None if value is None else self.enum(value)


def _status(enum: type[StrEnum], default: StrEnum) -> Any:
    return Field(default=default, sa_column=Column(StatusType(enum), nullable=False))


def _dt(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _now() -> Any:
    """A time set when the row is made."""
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


def _has(column: str) -> dict[str, Any]:
    """A partial index's condition: only the rows where `column` has a value."""
    where = text(f"{column} IS NOT NULL")
    return {"postgresql_where": where, "sqlite_where": where}


def _packed() -> Any:
    return Field(default=None, sa_column=Column(PackedJSON(), nullable=True))


def _json() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


class Tenant(SQLModel, table=True):
    __tablename__ = "tenant"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    api_key_hash: str = Field(max_length=64, unique=True)
    api_key_prefix: str = Field(max_length=16)
    created_at: datetime = _now()


class ConnectedAccount(SQLModel, table=True):
    __tablename__ = "connected_account"
    __table_args__ = (
        Index("ix_account_lookup", "tenant_id", "app", "user_id"),
        # A page of accounts, newest first, whole or under one filter (api/account_pages.py).
        Index("ix_account_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_account_list_app", "tenant_id", "app", "created_at", "id"),
        Index("ix_account_list_user", "tenant_id", "user_id", "created_at", "id"),
        Index("ix_account_list_status", "tenant_id", "status", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=40)
    app: str = Field(max_length=80)
    user_id: str = Field(max_length=200)
    status: AccountStatus = _status(AccountStatus, AccountStatus.ACTIVE)
    credentials_enc: str = Field(sa_column=Column(Text, nullable=False))
    connection_config: dict[str, Any] | None = _json()
    created_at: datetime = _now()
    updated_at: datetime = _now()
    last_used_at: datetime | None = _dt()
    # How it was connected: `api` (POST /connected-accounts) or `connect_page` (/connect/...).
    source: str = Field(
        default="api", sa_column=Column(String(20), nullable=False, server_default="api")
    )


class ConnectSession(SQLModel, table=True):
    """A single-use link for an end user to connect an account (POST /connect-sessions).
    Its token is stored only as its SHA-256, and so is each OAuth2 `state` it hands out."""

    __tablename__ = "connect_session"

    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=40, index=True)
    app: str = Field(max_length=80)
    user_id: str = Field(max_length=200)
    account_id: str | None = Field(default=None, max_length=40)  # reconnects this account
    redirect_url: str = Field(sa_column=Column(Text, nullable=False))
    scopes: list[str] | None = _json()
    connection_config: dict[str, Any] | None = _json()
    token_hash: str = Field(max_length=64, unique=True)
    # The OAuth2 flow under way: its state's hash, the browser's (cookie) hash, and the
    # PKCE verifier (encrypted, bound to the session).
    state_hash: str | None = Field(default=None, max_length=64, unique=True)
    browser_hash: str | None = Field(default=None, max_length=64)
    verifier_enc: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    used_at: datetime | None = _dt()
    created_at: datetime = _now()


class Batch(SQLModel, table=True):
    """Calls submitted together by POST /function-calls/batch."""

    __tablename__ = "batch"
    # The console's batches, a page at a time (keyset: created_at, id).
    __table_args__ = (Index("ix_batch_tenant_created", "tenant_id", "created_at", "id"),)

    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=40, index=True)
    accepted: int
    rejected: int
    created_at: datetime = _now()


class FunctionCall(SQLModel, table=True):
    __tablename__ = "function_call"
    __table_args__ = (
        Index("ix_call_tenant_id", "tenant_id", "id"),
        # The log's filters (api/call_log.py), each read newest first (migration 0009).
        Index("ix_call_log_app", "tenant_id", "app", "id"),
        Index("ix_call_log_status", "tenant_id", "status", "id"),
        Index("ix_call_log_user", "tenant_id", "user_id", "id"),
        # Only the calls with a value (migration 0011): `= ?` implies it, and most calls
        # have no batch.
        Index("ix_call_log_batch", "tenant_id", "batch_id", "id", **_has("batch_id")),
        Index(
            "ix_call_log_network_code", "tenant_id", "network_code", "id", **_has("network_code")
        ),
        Index("ix_function_call_batch_id", "batch_id", **_has("batch_id")),
        # A tenant's unfinished calls (api/quotas.py): only they are in it.
        Index(
            "ix_call_tenant_open",
            "tenant_id",
            postgresql_where=text(UNFINISHED_SQL),
            sqlite_where=text(UNFINISHED_SQL),
        ),
        Index("ix_call_status_due", "status", "next_attempt_at"),
        # The console's last hour: a tenant's calls by creation time, counted per status
        # from the index alone (api/console/chart_queries.py).
        Index("ix_call_tenant_created", "tenant_id", "created_at", "status"),
        # The sweeper's publishes that failed and messages unclaimed too long (worker/sweeper.py).
        Index("ix_call_status_published", "status", "published_at", "next_attempt_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=40)
    app: str = Field(max_length=80)
    function: str = Field(max_length=120)
    user_id: str = Field(max_length=200)
    connected_account_id: str = Field(max_length=40)
    batch_id: str | None = Field(default=None, max_length=40)
    method: str = Field(max_length=10)
    url: str = Field(sa_column=Column(Text, nullable=False))
    request_headers: dict[str, str] | None = _json()
    request_body: Any = _json()
    callback_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    idempotency_key: str | None = Field(default=None, max_length=200)
    options: dict[str, Any] | None = _json()  # the caller's `retry` and `timeout` params
    # A rate-limit slot booked for the call's next attempt: {slot_at, booked_at, reason}.
    rate_wait: dict[str, Any] | None = _json()
    status: CallStatus = _status(CallStatus, CallStatus.QUEUED)
    error: str | None = Field(default=None, max_length=60)
    error_message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    network_code: str | None = Field(default=None, max_length=3)
    output: Any = _packed()  # compact JSON, compressed when large (models/db/packed.py)
    output_truncated: bool = False
    response_headers: dict[str, str] | None = _packed()
    duration_ms: int | None = None
    attempt_count: int = 0
    # The running attempt's deadline: past it, the call is taken back even from a worker
    # whose heartbeat goes on (one stuck on this call).
    lease_expires_at: datetime | None = _dt()
    # The worker process running the call (worker_process.id): its heartbeat holds the call.
    claimed_by: str | None = Field(default=None, max_length=80)
    next_attempt_at: datetime | None = _dt()
    published_at: datetime | None = _dt()  # last handed to the broker; None: publish failed
    created_at: datetime = _now()
    started_at: datetime | None = _dt()
    finished_at: datetime | None = _dt()


class CallIdempotency(SQLModel, table=True):
    """The call an Idempotency-Key names per tenant (apart: migration 0013)."""

    __tablename__ = "call_idempotency"
    tenant_id: str = Field(primary_key=True, max_length=40)
    idempotency_key: str = Field(primary_key=True, max_length=200)
    call_id: str = Field(max_length=40, index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class WorkerProcess(SQLModel, table=True):
    """A worker process that is alive while its heartbeat keeps `expires_at` ahead: the
    calls it claimed are its own until then (PASSTHRU_LEASE_S)."""

    __tablename__ = "worker_process"

    id: str = Field(primary_key=True, max_length=80)
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class CallAttempt(SQLModel, table=True):
    __tablename__ = "call_attempt"

    id: int | None = Field(default=None, primary_key=True)
    call_id: str = Field(foreign_key="function_call.id", max_length=40, index=True)
    number: int
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    duration_ms: int
    network_code: str | None = Field(default=None, max_length=3)
    error: str | None = Field(default=None, max_length=60)
    error_message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    decision: str = Field(max_length=200)
    rate_wait_ms: int | None = None  # how long rate limits held this attempt back
    rate_wait_reason: str | None = Field(default=None, max_length=200)


class WebhookEndpoint(SQLModel, table=True):
    """A tenant's default webhook URL and signing secrets (encrypted)."""

    __tablename__ = "webhook_endpoint"

    tenant_id: str = Field(primary_key=True, foreign_key="tenant.id", max_length=40)
    url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # {"current": "whsec_...", "previous": "whsec_..." | None, "previous_until": epoch | None}
    secrets_enc: str = Field(sa_column=Column(Text, nullable=False))
    disabled_at: datetime | None = _dt()
    disabled_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = _now()
    updated_at: datetime = _now()


class WebhookDelivery(SQLModel, table=True):
    """One event to deliver (its id is the stable `webhook-id`), retried on a schedule."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_delivery_status_due", "status", "next_attempt_at"),)

    id: str = Field(primary_key=True, max_length=48)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=40, index=True)
    call_id: str | None = Field(default=None, max_length=40, index=True)
    batch_id: str | None = Field(default=None, max_length=40)
    account_id: str | None = Field(default=None, max_length=40)  # connection.created
    event: str = Field(max_length=60)
    url: str = Field(sa_column=Column(Text, nullable=False))
    to_endpoint: bool = False  # the tenant's endpoint (a 410 disables it), not a callback_url
    status: DeliveryStatus = _status(DeliveryStatus, DeliveryStatus.PENDING)
    attempt_count: int = 0
    next_attempt_at: datetime | None = _dt()
    published_at: datetime | None = _dt()
    lease_expires_at: datetime | None = _dt()
    created_at: datetime = _now()
    finished_at: datetime | None = _dt()


class WebhookAttempt(SQLModel, table=True):
    __tablename__ = "webhook_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="webhook_delivery.id", max_length=48, index=True)
    number: int
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    duration_ms: int
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=200)
    decision: str = Field(max_length=200)
    url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # went to
