"""Rows, runtimes and look-ups that the worker tests share."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from models.broker import NO_TENANTS, NoPublisher
from models.broker_epoch import EpochKept
from models.calls.states import CallStatus
from models.catalog.apps import Catalog
from models.crypto.secrets import Vault
from models.db.engine import session_scope
from models.db.ids import new_id
from models.db.tables import CallAttempt, ConnectedAccount, FunctionCall, Tenant
from models.ratelimit.store import UNLIMITED
from models.settings import Settings
from worker.calls.credentials import NoRefresh
from worker.net.egress import EgressPolicy
from worker.net.send import SendPolicy
from worker.net.sender import Sender
from worker.runtime import CallRules, Notify, Runtime

NOW = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
SECRET = "xoxb-pipeline-secret-token"
URL = "https://slack.com/api/conversations.list?limit=2"


Row = TypeVar("Row", ConnectedAccount, FunctionCall)


def insert(engine: Engine, row: Row) -> Row:
    with session_scope(engine) as session:
        session.add(row)
    return row


def make_account(
    engine: Engine,
    tenant: Tenant,
    vault: Vault,
    *,
    app: str = "slack",
    credentials: dict[str, Any] | None = None,
    encrypted: str | None = None,
    connection_config: dict[str, Any] | None = None,
) -> ConnectedAccount:
    """A connected account of `tenant`, its credentials encrypted under `vault` and bound to
    it (or `encrypted` as given)."""
    account_id = new_id("ca")
    account = ConnectedAccount(
        id=account_id,
        tenant_id=tenant.id,
        app=app,
        user_id="user-1",
        credentials_enc=encrypted
        or vault.encrypt(credentials or {"access_token": SECRET}, bound_to=account_id),
        connection_config=connection_config,
    )
    return insert(engine, account)


def make_call(
    engine: Engine,
    account: ConnectedAccount,
    *,
    method: str = "GET",
    url: str = URL,
    status: CallStatus = CallStatus.QUEUED,
    app: str | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    **fields: Any,
) -> FunctionCall:
    """A function call of `account` (its app unless `app` says otherwise); `fields` set the rest."""
    app = app or account.app
    # As in the service, the id is made when the call is: at its created_at, when given.
    made = fields.get("created_at")
    call = FunctionCall(
        id=new_id("fc", now_ms=None if made is None else int(made.timestamp() * 1000)),
        tenant_id=account.tenant_id,
        app=app,
        function=f"{app}-passthrough-request",
        user_id=fields.pop("user_id", account.user_id),
        connected_account_id=account.id,
        method=method,
        url=url,
        request_headers=headers,
        request_body=body,
        status=status,
        **fields,
    )
    return insert(engine, call)


def make_runtime(
    engine: Engine,
    catalog: Catalog,
    vault: Vault,
    client: Callable[[], httpx.AsyncClient],
    *,
    max_response_bytes: int,
    now: datetime = NOW,
    notify: Notify = lambda *_: None,
) -> Runtime:
    """A Runtime whose clock stands at `now`; the caller closes `runtime.sender`."""
    sender = Sender(
        client,
        SendPolicy(
            overrides={},
            egress=EgressPolicy(allow_private=True),
            max_response_bytes=max_response_bytes,
        ),
    )
    return Runtime(
        engine=engine,
        sender=sender,
        catalog=catalog,
        vault=vault,
        rules=CallRules.of(Settings()),
        clock=lambda: now,
        notify=notify,
        limiter=UNLIMITED,
        refresher=NoRefresh(),
        publisher=NoPublisher(),
        epoch=EpochKept(),
    )


def load(engine: Engine, call_id: str) -> FunctionCall:
    with Session(engine) as session:
        call = session.get(FunctionCall, call_id)
        assert call is not None
        return call


def attempts(engine: Engine, call_id: str) -> list[CallAttempt]:
    return attempts_of(engine, [call_id])


def attempts_of(engine: Engine, call_ids: Sequence[str]) -> list[CallAttempt]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(CallAttempt)
                .where(col(CallAttempt.call_id).in_(call_ids))
                .order_by(col(CallAttempt.call_id), col(CallAttempt.number))
            )
        )


class RecordingPublisher:
    """Records what would reach the broker: each group of call ids with its lane and
    countdown, and webhook deliveries."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str, float]] = []
        self.deliveries: list[str] = []
        self.tenant_of: dict[str, str] = {}  # each interactive id's tenant, as published
        self.takes_deliveries = True  # False: as a broker that is away

    def publish_calls(
        self,
        call_ids: Sequence[str],
        queue: str,
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
        first: bool = False,
    ) -> bool:
        self.tenant_of.update(tenant_of)
        self.calls.append((list(call_ids), queue, countdown_s))
        return True

    def publish_deliveries(
        self,
        delivery_ids: Sequence[str],
        countdown_s: float = 0.0,
        tenant_of: Mapping[str, str] = NO_TENANTS,
    ) -> bool:
        self.tenant_of.update(tenant_of)
        self.deliveries.extend(delivery_ids)
        return self.takes_deliveries

    def top_up_bulk(self) -> int:
        return 0
