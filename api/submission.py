"""Accepting a call: the Submission, checked in full into a row (app, connected account,
params, callback URL), written (once per Idempotency-Key: api/idempotency.py), then its id
published."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, bindparam, insert, update
from sqlmodel import col

from api.account_selection import AccountCache, account_for
from api.call_urls import check_callback_url
from api.idempotency import write_keyed
from api.prometheus import CALLS_ACCEPTED
from api.schemas.calls import FunctionCallRequest, PassthroughParams
from api.suggestions import function_problem, unknown_app
from api.validation import CallLimits, app_slug_of, check_params
from models.broker import NO_TENANTS, Publisher
from models.calls.states import CallStatus
from models.catalog.apps import Catalog
from models.db.direct import DirectStatement, StatementRunner, statement_runner
from models.db.engine import session_scope, utcnow
from models.db.ids import new_id
from models.db.tables import FunctionCall, Tenant
from models.errors import invalid
from models.keys import QUEUE_INTERACTIVE
from models.logs import CALLS_LOGGER

call_log = logging.getLogger(CALLS_LOGGER)


@dataclass(frozen=True, kw_only=True)
class Submission:
    """One call as submitted, not yet checked against the app and the account."""

    app: str
    params: PassthroughParams
    user_id: str | None
    connected_account_id: str | None
    callback_url: str | None
    idempotency_key: str | None
    limits: CallLimits  # the operator's bounds on a call


def submission_for(
    app: str,
    params: PassthroughParams,
    catalog: Catalog,
    limits: CallLimits,
    *,
    user_id: str | None,
    connected_account_id: str | None,
    callback_url: str | None,
    idempotency_key: str | None,
) -> Submission:
    """A call to `app`'s API; a 404 when the catalog has no such app."""
    if catalog.get(app) is None:
        raise unknown_app(app, catalog)
    return Submission(
        app=app,
        params=params,
        user_id=user_id,
        connected_account_id=connected_account_id,
        callback_url=callback_url,
        idempotency_key=idempotency_key,
        limits=limits,
    )


def function_call_submission(
    request: FunctionCallRequest,
    user_id: str | None,
    catalog: Catalog,
    limits: CallLimits,
    idempotency_key: str | None = None,
) -> Submission:
    """A call in the SDK's form: its function names the app (`<app>-passthrough-request`),
    and its own `user_id`, if any, stands for the X-User-ID header's."""
    slug = app_slug_of(request.function)
    if slug is None or catalog.get(slug) is None:
        raise function_problem(request.function, catalog)
    return submission_for(
        slug,
        request.params,
        catalog,
        limits,
        user_id=request.user_id or user_id,
        connected_account_id=request.connected_account_id,
        callback_url=request.callback_url,
        idempotency_key=idempotency_key,
    )


def build_row(
    db: StatementRunner,
    tenant: Tenant,
    catalog: Catalog,
    sub: Submission,
    batch_id: str | None,
    accounts: AccountCache | None = None,
    call_id: str | None = None,
) -> dict[str, Any]:
    """Validate `sub` completely; return the new call's column values (no ORM object: a
    batch inserts a thousand of these at once), under `call_id` or a new id."""
    app = catalog.get(sub.app)
    if app is None:
        raise unknown_app(sub.app, catalog)
    account = account_for(db, tenant, app, sub.user_id, sub.connected_account_id, accounts)
    try:
        base_url, hosts = app.resolve(account.connection_config)
    except ValueError as exc:
        raise invalid("connected_account_id", str(exc)) from exc
    checked = check_params(sub.params, app, base_url, hosts, sub.limits)
    callback = check_callback_url(
        sub.callback_url, allow_private=sub.limits.allow_private_callbacks
    )
    now = utcnow()
    return {
        "id": call_id or new_id("fc"),
        "tenant_id": tenant.id,
        "app": app.slug,
        "function": f"{app.slug}-passthrough-request",
        "user_id": account.user_id,
        "connected_account_id": account.id,
        "batch_id": batch_id,
        "method": checked.method,
        "url": checked.url,
        "request_headers": checked.headers,
        "request_body": sub.params.body,
        "callback_url": callback,
        "idempotency_key": sub.idempotency_key,
        "options": checked.options,
        "status": CallStatus.QUEUED,
        "output_truncated": False,
        "attempt_count": 0,
        "created_at": now,
        "published_at": now,
    }


# Called with the number of calls about to be written; raises ApiError (a 429) to refuse.
Admit = Callable[[int], None]


def admit_all(_: int) -> None:
    return None


_CALLS = FunctionCall.__table__  # type: ignore[attr-defined]
# The columns `build_row` gives, each a parameter: the INSERT of one call, on the driver's
# cursor on Postgres (models/db/direct.py).
_ROW_COLUMNS = (
    "id",
    "tenant_id",
    "app",
    "function",
    "user_id",
    "connected_account_id",
    "batch_id",
    "method",
    "url",
    "request_headers",
    "request_body",
    "callback_url",
    "idempotency_key",
    "options",
    "status",
    "output_truncated",
    "attempt_count",
    "created_at",
    "published_at",
)
_INSERT_ONE = DirectStatement(insert(_CALLS).values({c: bindparam(c) for c in _ROW_COLUMNS}))


def submit(
    engine: Engine,
    tenant: Tenant,
    catalog: Catalog,
    sub: Submission,
    admit: Admit = admit_all,
    *,
    publisher: Publisher,
    call_id: str | None = None,
) -> FunctionCall:
    """Write one call (under `call_id`, or a new id) and publish it; returns the call (its
    values without ORM state, a tenth of the CPU; an earlier one for a repeated key). `admit`
    is asked once the call is valid and new, before it is written."""

    def row_of(db: StatementRunner) -> dict[str, Any]:
        return build_row(db, tenant, catalog, sub, None, call_id=call_id)

    if sub.idempotency_key:
        call, new = write_keyed(engine, tenant, sub.idempotency_key, row_of, admit)
        if not new:
            return call  # the earlier call the key names: published when it was written
    else:
        call = _write(engine, row_of, admit)
    publish_or_mark(engine, publisher, [call.id], QUEUE_INTERACTIVE, {call.id: tenant.id})
    CALLS_ACCEPTED.labels("interactive").inc()
    call_log.info(
        "call %s accepted",
        call.id,
        extra={
            "event": "call.accepted",
            "call_id": call.id,
            "tenant_id": tenant.id,
            "app": call.app,
            "method": call.method,
            "path": urlsplit(call.url).path,
        },
    )
    return call


def _write(
    engine: Engine, row_of: Callable[[StatementRunner], dict[str, Any]], admit: Admit
) -> FunctionCall:
    """A call without an Idempotency-Key: its INSERT is the one write (no BEGIN, no COMMIT
    on Postgres), and it and the account's SELECT run on the driver's cursor there."""
    with statement_runner(engine) as db:
        row = row_of(db)
        admit(1)
        db.rows(_INSERT_ONE, row)
    return FunctionCall.model_construct(**row)


def publish_or_mark(
    engine: Engine,
    publisher: Publisher,
    call_ids: list[str],
    queue: str,
    tenant_of: Mapping[str, str] = NO_TENANTS,
) -> None:
    """Publish (interactive calls on their tenants' lists, by `tenant_of`); if the broker is
    unreachable, mark the calls so the sweeper publishes them."""
    if not publisher.publish_calls(call_ids, queue, tenant_of=tenant_of):
        with session_scope(engine) as session:
            session.exec(
                update(FunctionCall)
                .where(col(FunctionCall.id).in_(call_ids))
                .values(published_at=None)
            )
