"""The Function Calls log: one call with its attempts, a page of the log (and the filter
its export shares), waiting for a call to end, and cancelling one that has not started."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import ColumnElement, Engine
from sqlmodel import col, select

from api.waiter import CallWaiter, Watch
from models.broker import Publisher
from models.calls.states import CALLS, CallStatus
from models.db.engine import read_session, session_scope, utcnow
from models.db.ids import first_id_at, is_id
from models.db.tables import CallAttempt, FunctionCall, Tenant
from models.errors import ApiError, ErrorDetail, invalid, not_found
from models.webhooks.due import one_tenant
from models.webhooks.outbox import enqueue_deliveries
from models.webhooks.publish import publish_deliveries_or_forget


def load_call(engine: Engine, tenant: Tenant, call_id: str) -> FunctionCall:
    with read_session(engine) as session:
        call = session.get(FunctionCall, call_id)
        if call is None or call.tenant_id != tenant.id:
            raise not_found("function call", call_id)
        return call


def load_attempts(engine: Engine, call_id: str) -> list[CallAttempt]:
    with read_session(engine) as session:
        return list(
            session.exec(
                select(CallAttempt)
                .where(col(CallAttempt.call_id) == call_id)
                .order_by(col(CallAttempt.number), col(CallAttempt.id))
            )
        )


async def wait_for_final(
    engine: Engine, waiter: CallWaiter, tenant: Tenant, call_id: str, timeout_s: float
) -> FunctionCall:
    """The call as soon as it is final, or as it is when `timeout_s` has passed."""
    latest = _Latest(engine, tenant, call_id)
    await waiter.wait(call_id, timeout_s, latest.is_final)
    return latest.calls[-1]


async def wait_for_result(
    engine: Engine, waiter: CallWaiter, tenant: Tenant, watch: Watch, timeout_s: float
) -> FunctionCall | bytes:
    """For a call just published, watched since before: its result's JSON as soon as a
    notice brings it (no read of the call), else the call as soon as it is final, or as
    it is when `timeout_s` has passed."""
    latest = _Latest(engine, tenant, watch.call_id)
    if await waiter.wait(watch.call_id, timeout_s, latest.is_final, watch) and watch.result:
        return watch.result
    if not latest.calls:  # the wait ended before any look at the database
        await latest.is_final()
    return latest.calls[-1]


@dataclass
class _Latest:
    """The call as last read while waiting."""

    engine: Engine
    tenant: Tenant
    call_id: str
    calls: list[FunctionCall] = field(default_factory=list)

    async def is_final(self) -> bool:
        call = await run_in_threadpool(load_call, self.engine, self.tenant, self.call_id)
        self.calls[:] = [call]
        return call.status.is_final


# How far apart a call's id (the time it was made) and its created_at can be: both are taken
# while one submission is served, well within this.
ID_SLACK_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class LogFilter:
    app: str | None = None
    status: CallStatus | None = None
    user_id: str | None = None
    batch_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    network_code: str | None = None


def log_conditions(tenant_id: str, filters: LogFilter) -> list[ColumnElement[bool]]:
    """The WHERE of the log and of its export: the tenant's calls that pass `filters`."""
    where = [col(FunctionCall.tenant_id) == tenant_id]
    if filters.app:
        where.append(col(FunctionCall.app) == filters.app)
    if filters.status:
        where.append(col(FunctionCall.status) == filters.status)
    if filters.user_id:
        where.append(col(FunctionCall.user_id) == filters.user_id)
    if filters.batch_id:
        where.append(col(FunctionCall.batch_id) == filters.batch_id)
    if filters.network_code:
        where.append(col(FunctionCall.network_code) == filters.network_code)
    # A time range is also a range of ids (time-ordered), widened by ID_SLACK_MS: the page is
    # then read from its first id on, instead of from the newest call of the tenant down.
    if filters.since:
        where.append(col(FunctionCall.created_at) >= filters.since)
        where.append(col(FunctionCall.id) >= first_id_at("fc", filters.since, -ID_SLACK_MS))
    if filters.until:
        where.append(col(FunctionCall.created_at) < filters.until)
        where.append(col(FunctionCall.id) < first_id_at("fc", filters.until, ID_SLACK_MS))
    return where


def list_calls(
    engine: Engine, tenant: Tenant, filters: LogFilter, cursor: str | None, limit: int
) -> tuple[list[FunctionCall], str | None]:
    """Newest first; the cursor is the last id seen, so inserts never shift a page. One
    that is not a call's id is a 400 naming `cursor`."""
    query = select(FunctionCall).where(*log_conditions(tenant.id, filters))
    if cursor and not is_id("fc", cursor):
        raise invalid(
            "cursor", "not a cursor this log gave; leave it out to start from the first page"
        )
    if cursor:
        query = query.where(col(FunctionCall.id) < cursor)
    query = query.order_by(col(FunctionCall.id).desc()).limit(limit + 1)
    with read_session(engine) as session:
        rows = list(session.exec(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def cancel_call(
    engine: Engine, tenant: Tenant, call_id: str, now: datetime, deliveries: list[str]
) -> FunctionCall:
    """`queued|retrying -> cancelled`; a call already running or finished is a 409. Its
    webhook event is written with it; the id is added to `deliveries`, to publish."""
    load_call(engine, tenant, call_id)
    with session_scope(engine) as session:
        changed = session.exec(
            CALLS.update(
                FunctionCall, CallStatus.CANCELLED, col(FunctionCall.id) == call_id
            ).values(
                finished_at=now,
                error="cancelled",
                next_attempt_at=None,
            )
        ).rowcount
        if changed == 1:
            deliveries.extend(enqueue_deliveries(session.connection(), [call_id], now))
    call = load_call(engine, tenant, call_id)
    if changed != 1:
        raise ApiError(
            "not_cancellable",
            [
                ErrorDetail(
                    "id",
                    f"call {call_id} is {call.status}; only queued or retrying "
                    "calls can be cancelled",
                )
            ],
            409,
        )
    return call


def cancel_and_announce(
    engine: Engine, publisher: Publisher, tenant: Tenant, call_id: str
) -> FunctionCall:
    """Cancel the call (as `cancel_call`) and publish its webhook deliveries."""
    deliveries: list[str] = []
    call = cancel_call(engine, tenant, call_id, utcnow(), deliveries)
    if deliveries:
        publish_deliveries_or_forget(
            engine, publisher, deliveries, one_tenant(deliveries, tenant.id)
        )
    return call
