"""Calls, start to end: claim -> credentials -> build -> rate limit -> send -> classify ->
retry decision -> store -> notify. A message carries one id (interactive) or many (bulk);
all are sent at once and stored in small groups as they finish. Every effect comes in
through `Runtime` (worker/runtime.py)."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from queue import Empty, SimpleQueue

from redis import RedisError

from models.calls.states import CallStatus
from models.errors import CredentialsError
from models.keys import QUEUE_INTERACTIVE
from models.oauth.token_exchange import RefreshUnavailable, Revoked
from models.webhooks.publish import publish_deliveries_or_forget
from worker import metrics
from worker.calls.claim import Claimed, claim
from worker.calls.credentials import AccountCredentials, refusal, revoked
from worker.calls.onward import OnwardRequest, Scrubbers, build_request
from worker.calls.outcome import judge, policy_of
from worker.calls.results import (
    Attempted,
    Result,
    call_option,
    event_tenants,
    failed,
    lane_of,
    log_attempt,
)
from worker.calls.scrub import NOTHING, Scrubber
from worker.calls.store import publish_or_forget, store_safely
from worker.calls.timeouts import resolve_timeouts
from worker.net.send import Failure, Outcome
from worker.net.sender import Deferred, Sent
from worker.ratelimit.admission import Go, Park, Plan, plan
from worker.ratelimit.handback import hand_back
from worker.ratelimit.learning import learn_pause
from worker.runtime import Runtime

log = logging.getLogger("passthru.worker")

# While calls of one message are in flight, finished ones are stored this often (all at
# once as soon as every one has finished).
FLUSH_EVERY_S = 0.25
# Beyond a send's own deadline, how long to wait before deciding the event loop is stuck.
STALL_MARGIN_S = 30.0
# When Redis (the limiter) does not answer, calls are handed back for this long.
LIMITER_DOWN_RETRY_S = 5.0


def execute_calls(call_ids: Sequence[str], rt: Runtime) -> dict[str, CallStatus]:
    """Run every claimable call among `call_ids`; return the new status of each one run."""
    message = _Message(rt, rt.clock(), AccountCredentials(rt.vault, rt.refresher))
    # Every request ends before its attempt's deadline (Sender hands back the rest).
    must_end_by = time.monotonic() + rt.rules.attempt_deadline_s - rt.rules.deadline_margin_s
    claimed = claim(
        rt.engine,
        call_ids,
        now=message.started_at,
        deadline_s=rt.rules.attempt_deadline_s,
        worker_id=rt.worker_id,
    )
    if len(claimed) < len(call_ids):
        log.info(
            "%d of %d calls not claimable (taken, finished or cancelled)",
            len(call_ids) - len(claimed),
            len(call_ids),
        )
    ready, prepared = message.prepare_all(claimed)
    admitted = message.admit(prepared)
    # Hand the requests over first: their delays count from the booking.
    results = rt.sender.send_all(
        [g.request for g in admitted.go],
        [g.delay_s for g in admitted.go],
        urgent=bool(claimed) and lane_of(claimed[0]) == QUEUE_INTERACTIVE,
        start_by=must_end_by,
        tenants=[g.claimed.call.tenant_id for g in admitted.go],
    )
    message.store(ready)
    hand_back(rt.engine, admitted.park, rt.clock(), rt.publisher)
    message.collect(results, admitted.go, must_end_by)
    return message.statuses


@dataclass
class _Message:
    """The calls of one message, from their claim to their stored results."""

    rt: Runtime
    started_at: datetime
    credentials: AccountCredentials
    statuses: dict[str, CallStatus] = field(default_factory=dict)
    scrubbers: Scrubbers = field(default_factory=Scrubbers)

    def prepare_all(
        self, claimed: list[Claimed]
    ) -> tuple[list[Attempted], list[tuple[Claimed, OnwardRequest]]]:
        """The requests to send, and the calls already decided without sending."""
        ready: list[Attempted] = []
        prepared: list[tuple[Claimed, OnwardRequest]] = []
        for c in claimed:
            built = self._prepare(c)
            if isinstance(built, Failure):  # decided on like a network failure
                built = self._judge(c, built, self.started_at)
            if isinstance(built, Result):
                ready.append(Attempted.of(c, self.started_at, built))
            else:
                prepared.append((c, built))
        return ready, prepared

    def _prepare(self, claimed: Claimed) -> OnwardRequest | Result | Failure:
        """The request to send; a Result when the call cannot run; a Failure when its token
        could not be refreshed just now."""
        call, account = claimed.call, claimed.account
        app = self.rt.catalog.get(call.app)
        if app is None:
            return failed("app_unavailable", f"app {call.app!r} is no longer in the catalog")
        if (refused := refusal(account)) is not None or account is None:
            return refused or failed("account_missing", "the connected account was deleted")
        try:
            base_url, hosts = app.resolve(account.connection_config)
            return build_request(
                method=call.method,
                url=call.url,
                headers=call.request_headers,
                body=call.request_body,
                app=app,
                base_url=base_url,
                allowed_hosts=hosts,
                credentials=self.credentials.of(account, app),
                scrubbers=self.scrubbers,
                timeouts=resolve_timeouts(
                    call_option(claimed, "timeout"),
                    app.timeouts,
                    self.rt.rules.timeouts,
                    self.rt.rules.max_timeout_s,
                ),
            )
        except Revoked as exc:
            return revoked(exc)
        except RefreshUnavailable as exc:
            return Failure("token_refresh_failed", str(exc), maybe_delivered=False, duration_ms=0)
        except (CredentialsError, ValueError) as exc:
            return failed("credentials_invalid", str(exc))
        except Exception as exc:
            # Stored data no request can be built from (a credential too long for a URL,
            # say) fails this call alone, never its message. Only the class is kept: the
            # message of an exception met while building may quote the credential.
            kind = type(exc).__name__
            log.error("call %s: its request could not be built (%s)", call.id, kind)
            return failed("invalid_request", f"the request could not be built ({kind})")

    def admit(self, prepared: list[tuple[Claimed, OnwardRequest]]) -> Plan:
        """Book each call's rate-limit slot; without the limiter nothing may go, so the
        calls are handed back for a little while."""
        rt = self.rt
        try:
            return plan(
                prepared,
                limiter=rt.limiter,
                catalog=rt.catalog,
                clock=rt.clock,
                tenant_cap=rt.rules.tenant_cap,
            )
        except RedisError as exc:
            log.warning("rate limiter unavailable (%s); %d calls wait", exc, len(prepared))
            come_back = self.started_at + timedelta(seconds=LIMITER_DOWN_RETRY_S)
            return Plan([], [Park(c, come_back, None) for c, _ in prepared])

    def collect(self, results: SimpleQueue[tuple[int, Sent]], go: list[Go], end_by: float) -> None:
        """Store outcomes as they come: what has finished every FLUSH_EVERY_S, or all at once
        when all are done (one transaction per message when the upstream is fast).

        Every request ends within its call's lease (one whose turn comes too late is handed
        back unsent); waiting longer means the loop died: the message fails, and its calls
        stay `running` until the sweeper takes them back."""
        stalled_after_s = max(0.0, end_by - time.monotonic()) + STALL_MARGIN_S
        pending = len(go)
        while pending:
            group = [results.get(timeout=stalled_after_s)]
            deadline = time.monotonic() + FLUSH_EVERY_S
            while len(group) < pending and (left := deadline - time.monotonic()) > 0:
                try:
                    group.append(results.get(timeout=left))
                except Empty:
                    break
            pending -= len(group)
            self._settle(group, go)

    def _settle(self, group: list[tuple[int, Sent]], go: list[Go]) -> None:
        now = self.rt.clock()
        done: list[Attempted] = []
        deferred: list[Park] = []
        for i, outcome in group:
            g = go[i]
            if isinstance(outcome, Deferred):
                deferred.append(
                    Park(g.claimed, now + timedelta(milliseconds=outcome.wait_ms), None)
                )
                continue
            try:
                result = self._after_send(g, outcome, now)
            except Exception:
                # Nothing an upstream sends may crash a message or leave a call unfinished.
                result = _unprocessable(g)
            done.append(Attempted.of(g.claimed, self.started_at, result))
        self.store(done)
        hand_back(self.rt.engine, deferred, now, self.rt.publisher)

    def _after_send(self, g: Go, outcome: Outcome, now: datetime) -> Result:
        rt, c = self.rt, g.claimed
        app = rt.catalog.get(c.call.app)
        learn_pause(
            rt.limiter,
            g.request.pause_key,
            outcome,
            app,
            now=now,
            max_wait_s=rt.rules.retry_policy.max_wait_s,
        )
        again = self.credentials.retry_after_401(
            c,
            outcome,
            app,
            max_attempts=policy_of(c, app, rt.rules.retry_policy).max_attempts,
            now=now,
            scrub=g.request.scrub,
        )
        result = again or self._judge(c, outcome, now, g.request.scrub)
        if g.wait_ms:
            return replace(result, rate_wait_ms=g.wait_ms, rate_wait_reason=g.reason)
        return result

    def _judge(
        self, c: Claimed, outcome: Outcome, now: datetime, scrub: Scrubber = NOTHING
    ) -> Result:
        return judge(
            c,
            outcome,
            self.rt.catalog.get(c.call.app),
            policy=self.rt.rules.retry_policy,
            now=now,
            rng=self.rt.rng,
            scrub=scrub,
        )

    def store(self, items: list[Attempted]) -> None:
        """Store the results still ours, then announce them: waiters first (a caller waits
        on the notice), then webhook deliveries, metrics, a log line each, and retries due
        soon."""
        if not items:
            return
        rt = self.rt
        deliveries: list[str] = []
        kept = store_safely(rt.engine, items, rt.clock, rt.touched, deliveries)
        finished = [i for i in kept if i.result.status.is_final]
        if finished:
            rt.notify(
                sorted(i.call_id for i in finished),
                [i.answer() for i in finished if i.lane == QUEUE_INTERACTIVE],
            )
        if deliveries:
            publish_deliveries_or_forget(
                rt.engine, rt.publisher, deliveries, event_tenants(kept, deliveries)
            )
        stored = {item.call_id for item in kept}
        for item in items:
            if item.call_id not in stored:
                log.warning("call %s was taken back before its result was stored", item.call_id)
        for item in kept:
            self.statuses[item.call_id] = item.result.status
            metrics.count_attempt(item.app or "unknown", item.result)
            log_attempt(item)
        for item in kept:
            if (countdown := item.result.countdown_s) is not None:
                tenant_of = {item.call_id: item.tenant_id} if item.tenant_id else {}
                publish_or_forget(
                    rt.engine, rt.publisher, [item.call_id], item.lane, countdown, tenant_of
                )


def _unprocessable(g: Go) -> Result:
    """The call's result when processing its outcome failed (a bug met by odd input): the
    call fails with the reason logged, scrubbed, instead of being left running."""
    log.error(
        "call %s: its outcome could not be processed\n%s",
        g.claimed.call.id,
        g.request.scrub.text(traceback.format_exc()),
    )
    return failed("internal_error", "passthru could not process the upstream's answer")
