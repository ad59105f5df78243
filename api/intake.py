"""Accepting calls for the submission routes, with what it takes in one object: the
database, the catalog, the waiter, the tenant's bounds, the publisher and the operator's
limits. The tenant's open calls are counted first (holding no connection); then each call
is validated, admitted against the tenant's bounds, written and published
(`submission.submit`; a batch's by the batch intake, `batch_intake.py`), and waited for if
`Prefer` asked or the operator's PASSTHRU_DEFAULT_WAIT_S says so
(`prefer.submission_wait`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.datastructures import State

from api.batch_intake import BatchIntake
from api.call_log import wait_for_final, wait_for_result
from api.prefer import SubmissionWait, parse_prefer, submission_wait
from api.prometheus import CALLS_REJECTED, DEFAULT_WAITS_SKIPPED
from api.quotas import Quotas
from api.schemas.batches import BatchAccepted, BatchSubmitted
from api.schemas.calls import FunctionCallRequest, PassthroughRequest
from api.submission import Submission, function_call_submission, submission_for, submit
from api.validation import CallLimits
from api.waiter import CallWaiter
from models.broker import Publisher
from models.calls.resources import CallResult, FunctionCallOut, call_out, call_result
from models.catalog.apps import Catalog
from models.db.ids import new_id
from models.db.tables import FunctionCall, Tenant
from models.errors import ApiError
from models.settings import Settings

log = logging.getLogger("passthru.api")


@dataclass(frozen=True)
class Accepted:
    """A submission's answer: the call (202), or its result when it ended within the wait
    asked for (200), and the `Preference-Applied` header."""

    body: FunctionCallOut | CallResult | bytes  # bytes: a CallResult's JSON from a notice
    status_code: int
    preference_applied: str | None


@dataclass(frozen=True)
class Intake:
    engine: Engine
    catalog: Catalog
    waiter: CallWaiter
    quotas: Quotas
    publisher: Publisher
    limits: CallLimits
    max_wait_s: float  # PASSTHRU_MAX_WAIT_S: the longest wait honoured
    default_wait_s: float  # PASSTHRU_DEFAULT_WAIT_S: the wait when `Prefer` asks none
    batches: BatchIntake

    @classmethod
    def of(cls, state: State) -> Intake:
        """From the app's state, as `create_app` sets it up (and a test may replace a part)."""
        settings: Settings = state.settings
        return cls(
            engine=state.engine,
            catalog=state.catalog,
            waiter=state.waiter,
            quotas=state.quotas,
            publisher=state.publisher,
            limits=CallLimits.of(settings),
            max_wait_s=settings.max_wait_s,
            default_wait_s=settings.default_wait_s,
            batches=state.batch_intake,
        )

    def passthrough(
        self,
        app: str,
        request: PassthroughRequest,
        user_id: str | None,
        idempotency_key: str | None,
    ) -> Submission:
        """A call to `app`'s API (a 404 when there is no such app)."""
        return submission_for(
            app,
            request,
            self.catalog,
            self.limits,
            user_id=user_id,
            connected_account_id=request.connected_account_id,
            callback_url=request.callback_url,
            idempotency_key=idempotency_key,
        )

    def function_call(
        self, request: FunctionCallRequest, user_id: str | None, idempotency_key: str | None
    ) -> Submission:
        """A call in the SDK's form."""
        return function_call_submission(
            request, user_id, self.catalog, self.limits, idempotency_key
        )

    async def accept(self, tenant: Tenant, sub: Submission, prefer: str | None) -> Accepted:
        """Write the call and publish it; then, if `Prefer: wait=N` asked (or `Prefer` asked
        nothing and the operator's default wait is set), hold one of the tenant's long polls
        and wait up to that long (at most `max_wait_s`) for it to end."""
        preference = parse_prefer(prefer, self.max_wait_s)
        wait = submission_wait(preference, self.default_wait_s, self.max_wait_s)
        with self._long_poll(tenant.id, wait) as wait_s:
            if not wait_s:
                call = await self._write(tenant, sub)
                return Accepted(call_out(call), 202, preference.applied)
            latest = await self._write_and_wait(tenant, sub, wait_s)
        if isinstance(latest, bytes):  # the result, as the worker announced it
            return Accepted(latest, 200, preference.applied)
        if latest.status.is_final:
            return Accepted(call_result(latest), 200, preference.applied)
        # not finished in time: the 202 shows where it stands now
        return Accepted(call_out(latest), 202, preference.applied)

    async def _write_and_wait(
        self, tenant: Tenant, sub: Submission, wait_s: float
    ) -> FunctionCall | bytes:
        """Write the call under an id watched before it is published, so a result announced
        at once is not missed; then wait for it (or for the earlier call a repeated
        Idempotency-Key names).

        Once the call is written it is accepted: if the database goes away during the wait,
        the answer is the call as written (202), never a 503 a client would follow by
        sending the call again."""
        call_id = new_id("fc")
        with self.waiter.watch(call_id) as watch:
            call = await self._write(tenant, sub, call_id)
            try:
                if call.id == call_id:
                    return await wait_for_result(self.engine, self.waiter, tenant, watch, wait_s)
                return await wait_for_final(self.engine, self.waiter, tenant, call.id, wait_s)
            except (OperationalError, PoolTimeout) as exc:
                log.warning(
                    "call %s: the database went away while its caller waited (%s); answered "
                    "as accepted",
                    call.id,
                    type(exc).__name__,
                )
                return call

    @contextmanager
    def _long_poll(self, tenant_id: str, wait: SubmissionWait) -> Iterator[float]:
        """The seconds to wait, holding one of the tenant's long polls meanwhile: a wait the
        caller asked for is a 429 when none is free, the default wait is then 0 (202)."""
        if not wait.wait_s:
            yield 0.0
        elif wait.asked:
            with self.quotas.waiting(tenant_id, "Prefer"):
                yield wait.wait_s
        else:
            with self.quotas.waiting_if_free(tenant_id) as held:
                if not held:
                    DEFAULT_WAITS_SKIPPED.inc()
                yield wait.wait_s if held else 0.0

    async def _write(
        self, tenant: Tenant, sub: Submission, call_id: str | None = None
    ) -> FunctionCall:
        """`submit`, once the tenant's open calls are counted (holding no connection)."""
        try:
            return await run_in_threadpool(self._count_and_submit, tenant, sub, call_id)
        except ApiError as exc:
            CALLS_REJECTED.labels(exc.error).inc()
            raise

    def _count_and_submit(
        self, tenant: Tenant, sub: Submission, call_id: str | None
    ) -> FunctionCall:
        self.quotas.prepare(tenant.id)
        return submit(
            self.engine,
            tenant,
            self.catalog,
            sub,
            partial(self.quotas.admit_calls, tenant.id),
            publisher=self.publisher,
            call_id=call_id,
        )

    async def accept_batch(
        self, tenant: Tenant, calls: list[Any], user_id: str | None
    ) -> BatchSubmitted:
        """Each call accepted or rejected on its own; the accepted ones written at once, by
        the batch intake (a process of its own, or the API's threads)."""
        taken = await self.batches.take(tenant, calls, user_id)
        return BatchSubmitted(
            batch_id=taken.batch_id,
            accepted=[BatchAccepted(index=i, id=call_id) for i, call_id in taken.accepted],
            rejected=taken.rejected,
        )
