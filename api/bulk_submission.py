"""Bulk submission: up to MAX_BATCH calls, each validated alone, the accepted ones written
in one transaction and published in chunks on the bulk lane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, func, insert, tuple_
from sqlmodel import col, select

from api.account_selection import AccountCache
from api.errors import validation_details
from api.parsing import find_problem, item_problem
from api.schemas.batches import BatchOut, BatchRejected
from api.schemas.calls import FunctionCallRequest
from api.submission import (
    Admit,
    Submission,
    admit_all,
    build_row,
    function_call_submission,
    publish_or_mark,
)
from api.validation import CallLimits
from models.broker import Publisher
from models.calls.states import FINAL, CallStatus
from models.catalog.apps import Catalog
from models.db.direct import OnConnection
from models.db.engine import read_connection, read_session, session_scope
from models.db.ids import new_id
from models.db.tables import Batch, FunctionCall, Tenant
from models.errors import ApiError, ErrorDetail, invalid, not_found
from models.keys import QUEUE_BULK

MAX_BATCH = 1000
_calls = FunctionCall.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Unfit:
    """A batch item refused before it is handed to another process: why."""

    problem: ErrorDetail


def handed_over(items: list[Any]) -> list[Any]:
    """`items` fit to hand to another process. Pickling recurses, and gives up some 500
    levels deep, where the API's parser goes on to 1,024: an item nested deeper than any
    call may be becomes the problem it would be refused for, and an item that is not an
    object, what `_submission` makes of one."""
    fit: list[Any] = []
    for raw in items:
        if not isinstance(raw, dict):
            fit.append(None)
        elif (problem := find_problem(raw)) is not None:
            fit.append(Unfit(problem))
        else:
            fit.append(raw)
    return fit


def _submission(raw: Any, user_id: str | None, catalog: Catalog, limits: CallLimits) -> Submission:
    if isinstance(raw, Unfit):
        raise ApiError("invalid_params", [raw.problem])
    if not isinstance(raw, dict):
        raise invalid("calls", "each call must be an object in the POST /function-calls form")
    problem = item_problem(raw)
    if problem is not None:
        raise ApiError("invalid_params", [problem])
    try:
        item = FunctionCallRequest.model_validate(raw)
    except ValidationError as exc:
        raise ApiError("invalid_params", validation_details(exc.errors())) from exc
    return function_call_submission(item, user_id, catalog, limits)


def submit_batch(
    engine: Engine,
    tenant: Tenant,
    catalog: Catalog,
    items: list[Any],
    user_id: str | None,
    limits: CallLimits,
    admit: Admit = admit_all,
    *,
    publisher: Publisher,
    batch_id: str | None = None,
) -> tuple[Batch, list[tuple[int, str]], list[BatchRejected]]:
    """Validate each call alone; a bad call is a rejected item, never a refused batch.
    `admit` is asked for the accepted ones before any is written. The batch and its calls
    are written in one transaction, under `batch_id` if given."""
    if not items:
        raise invalid("calls", "give at least one call")
    if len(items) > MAX_BATCH:
        raise invalid("calls", f"at most {MAX_BATCH} calls per batch; split it")
    batch_id = batch_id or new_id("bt")
    accepted: list[tuple[int, dict[str, Any]]] = []
    rejected: list[BatchRejected] = []
    accounts: AccountCache = {}
    with read_connection(engine) as conn:
        db = OnConnection(conn)
        for index, raw in enumerate(items):
            try:
                sub = _submission(raw, user_id, catalog, limits)
                accepted.append((index, build_row(db, tenant, catalog, sub, batch_id, accounts)))
            except ApiError as exc:
                rejected.append(BatchRejected(index=index, **exc.body()))  # type: ignore[arg-type]
    if accepted:
        admit(len(accepted))
    batch = Batch(id=batch_id, tenant_id=tenant.id, accepted=len(accepted), rejected=len(rejected))
    with session_scope(engine) as session:
        session.add(batch)
        if accepted:
            session.flush()
            session.connection().execute(insert(_calls), [row for _, row in accepted])
    if accepted:
        ids = [row["id"] for _, row in accepted]
        publish_or_mark(engine, publisher, ids, QUEUE_BULK, dict.fromkeys(ids, tenant.id))
    return batch, [(i, row["id"]) for i, row in accepted], rejected


def written_calls(engine: Engine, batch_id: str) -> list[str] | None:
    """The ids of a batch's calls still queued, or None if the batch was never written."""
    with read_session(engine) as session:
        if session.get(Batch, batch_id) is None:
            return None
        return list(
            session.exec(
                select(FunctionCall.id).where(
                    col(FunctionCall.batch_id) == batch_id,
                    col(FunctionCall.status) == CallStatus.QUEUED,
                )
            ).all()
        )


def batch_status(engine: Engine, tenant: Tenant, batch_id: str) -> BatchOut:
    with read_session(engine) as session:
        batch = session.get(Batch, batch_id)
        if batch is None or batch.tenant_id != tenant.id:
            raise not_found("batch", batch_id)
    return _progress(engine, [batch])[0]


def recent_batches(
    engine: Engine, tenant: Tenant, limit: int, cursor: str | None = None
) -> tuple[list[BatchOut], str | None]:
    """The tenant's `limit` newest batches older than the batch `cursor` names (keyset
    paging over `ix_batch_tenant_created`), newest first, each with its calls per status,
    and the next page's cursor (None on the last page). A cursor that names no batch of
    the tenant is a 400."""
    query = select(Batch).where(col(Batch.tenant_id) == tenant.id)
    with read_session(engine) as session:
        if cursor is not None:
            last = session.get(Batch, cursor)
            if last is None or last.tenant_id != tenant.id:
                raise invalid("cursor", "not a cursor this page gave; start from the first page")
            query = query.where(
                tuple_(col(Batch.created_at), col(Batch.id)) < tuple_(last.created_at, last.id)
            )
        ordered = query.order_by(col(Batch.created_at).desc(), col(Batch.id).desc())
        batches = list(session.exec(ordered.limit(limit + 1)))
    more = len(batches) > limit
    batches = batches[:limit]
    return _progress(engine, batches), (batches[-1].id if more else None)


def _progress(engine: Engine, batches: list[Batch]) -> list[BatchOut]:
    """Each batch's progress, counted in one query over all of them."""
    counts: dict[str, dict[str, int]] = {b.id: {} for b in batches}
    if batches:
        with read_session(engine) as session:
            rows = session.exec(
                select(FunctionCall.batch_id, FunctionCall.status, func.count())
                .where(col(FunctionCall.batch_id).in_(list(counts)))
                .group_by(col(FunctionCall.batch_id), col(FunctionCall.status))
            ).all()
        for batch_id, status, n in rows:
            counts[str(batch_id)][str(status)] = int(n)
    return [_batch_out(b, counts[b.id]) for b in batches]


def _batch_out(batch: Batch, counts: dict[str, int]) -> BatchOut:
    finished = sum(counts.get(s, 0) for s in FINAL)
    return BatchOut(
        id=batch.id,
        created_at=batch.created_at,
        accepted=batch.accepted,
        rejected=batch.rejected,
        counts=counts,
        finished=finished,
        done=finished == batch.accepted,
    )
