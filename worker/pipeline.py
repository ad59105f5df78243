"""Calls, start to end: claim -> resolve credentials -> build -> send -> classify -> record
-> notify. A message carries one id (interactive) or many (bulk); all are sent at once and
recorded in small groups as they finish. Every effect comes in through `Runtime`."""

from __future__ import annotations

import logging
import math
import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from queue import Empty
from typing import Any

from pydantic import ValidationError
from redis import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError

from models.accounts.credentials import Credentials, OAuth2Credentials, load_credentials
from models.accounts.states import AccountStatus
from models.calls.states import CallStatus
from models.catalog.apps import App, Catalog, RateLimitSpec, RetrySpec
from models.crypto.secrets import Vault
from models.errors import CredentialsError
from models.keys import QUEUE_BULK, QUEUE_INTERACTIVE
from models.ratelimit.store import Limiter
from models.settings import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_MAX_TIMEOUT_S,
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
)
from worker import metrics
from worker.admission import Go, Park, Plan, plan
from worker.claim import Claimed, claim
from worker.oauth import Refresher, RefreshUnavailable, Revoked
from worker.onward import OnwardRequest, build_request
from worker.outcome import MAX_COUNTDOWN_S, classify, failed
from worker.record import Finished, Result, park, record
from worker.retry import RetryIn, RetryPolicy, decide, pause_asked_s, policy_for
from worker.scrub import NOTHING, Scrubber
from worker.send import Answer, Failure, Outcome
from worker.sender import Deferred, Sender
from worker.timeouts import Timeouts, resolve_timeouts

log = logging.getLogger("passthru.worker")

# While calls of one message are in flight, finished ones are stored this often (all at
# once as soon as every one has finished).
FLUSH_EVERY_S = 0.25
# Beyond a send's own deadline, how long to wait before deciding the event loop is stuck.
STALL_MARGIN_S = 30.0
REAUTH = "connect the account again with PATCH /connected-accounts/{id}"
# When Redis (the limiter) does not answer, calls are handed back for this long.
LIMITER_DOWN_RETRY_S = 5.0
DEFAULT_TIMEOUTS = Timeouts(DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S, DEFAULT_TIMEOUT_S)


@dataclass(frozen=True)
class Runtime:
    engine: Engine
    sender: Sender
    catalog: Catalog
    vault: Vault
    lease_s: float
    clock: Callable[[], datetime]
    notify: Callable[[Sequence[str]], None]
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    # Every request ends at least this long before its call's lease (settings.lease_margin_s).
    lease_margin_s: float = 10.0
    # The operator's onward timeouts, and the cap on any an app or a call sets.
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S
    rng: random.Random = field(default_factory=random.Random)
    # Publishes retries: (call ids, lane, countdown in seconds). None: the sweeper does it.
    republish: Callable[[Sequence[str], str, float], None] | None = None
    # account id -> when this process last wrote its last_used_at
    touched: dict[str, datetime] = field(default_factory=dict)
    # Global rate limits and pauses. None: no limits (tests of other things).
    limiter: Limiter | None = None
    # The operator's cap on each tenant's calls across its apps (PASSTHRU_TENANT_RATE_LIMIT).
    tenant_cap: RateLimitSpec | None = None
    # Refreshes OAuth2 tokens. None: tokens are sent as stored.
    refresher: Refresher | None = None
    # Publishes webhook deliveries written with finished calls. None: the sweeper does it.
    publish_webhooks: Callable[[Sequence[str]], object] | None = None


@dataclass
class _Batch:
    """Credentials decrypted once per account per message."""

    rt: Runtime
    credentials: dict[str, Credentials | Exception] = field(default_factory=dict)

    def credentials_of(self, claimed: Claimed, app: App) -> Credentials:
        """The account's credentials, an OAuth2 token refreshed first if it is about to
        expire. Raises CredentialsError, Revoked or RefreshUnavailable."""
        assert claimed.account is not None
        key = claimed.account.id
        if key not in self.credentials:
            try:
                data = self.rt.vault.decrypt(claimed.account.credentials_enc, bound_to=key)
                creds = load_credentials(data)
                if isinstance(creds, OAuth2Credentials) and self.rt.refresher is not None:
                    creds = self.rt.refresher.ensure_fresh(
                        app, key, creds, config=claimed.account.connection_config
                    )
                self.credentials[key] = creds
            except ValidationError as exc:  # its text quotes the values: secrets
                fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
                self.credentials[key] = CredentialsError(
                    f"the stored credentials are not valid ({', '.join(fields)}); {REAUTH}"
                )
            except (CredentialsError, ValueError, Revoked, RefreshUnavailable) as exc:
                self.credentials[key] = exc
        value = self.credentials[key]
        if isinstance(value, Revoked | RefreshUnavailable):
            raise value
        if isinstance(value, Exception):
            raise CredentialsError(str(value))
        return value


def execute_calls(call_ids: Sequence[str], rt: Runtime) -> dict[str, CallStatus]:
    """Run every claimable call among `call_ids`; return the new status of each one run."""
    started_at = rt.clock()
    # Every request must end this long before the lease does (Sender hands back the rest).
    must_end_by = time.monotonic() + rt.lease_s - rt.lease_margin_s
    claimed = claim(rt.engine, call_ids, now=started_at, lease_s=rt.lease_s)
    if len(claimed) < len(call_ids):
        log.info(
            "%d of %d calls not claimable (taken, finished or cancelled)",
            len(call_ids) - len(claimed),
            len(call_ids),
        )
    batch = _Batch(rt)
    ready: list[Finished] = []
    prepared_calls: list[tuple[Claimed, OnwardRequest]] = []
    for c in claimed:
        prepared = _prepare(c, batch)
        if isinstance(prepared, Result):
            ready.append(_finished(c, started_at, prepared))
        elif isinstance(prepared, Failure):
            ready.append(_finished(c, started_at, _decided(c, prepared, rt, started_at)))
        else:
            prepared_calls.append((c, prepared))
    try:
        admitted = plan(
            prepared_calls,
            limiter=rt.limiter,
            catalog=rt.catalog,
            clock=rt.clock,
            tenant_cap=rt.tenant_cap,
        )
    except RedisError as exc:
        # Without the limiter nothing may go: hand the calls back for a little while.
        log.warning("rate limiter unavailable (%s); %d calls wait", exc, len(prepared_calls))
        come_back = started_at + timedelta(seconds=LIMITER_DOWN_RETRY_S)
        admitted = Plan([], [Park(c, come_back, None) for c, _ in prepared_calls])
    # Hand the requests over first: their delays count from the booking.
    to_send = admitted.go
    results = rt.sender.send_all(
        [g.request for g in to_send],
        [g.delay_s for g in to_send],
        urgent=bool(claimed) and _lane(claimed[0]) == QUEUE_INTERACTIVE,
        start_by=must_end_by,
    )
    statuses: dict[str, CallStatus] = {}
    _store(ready, rt, statuses)
    _park(admitted.park, rt, rt.clock())
    # Every request ends within its call's lease (one whose turn comes too late is handed
    # back unsent); waiting longer means the loop died: fail the message (its calls stay
    # `running` until the sweeper takes them back).
    stalled_after_s = max(0.0, must_end_by - time.monotonic()) + STALL_MARGIN_S
    pending = len(to_send)
    while pending:
        # Store what has finished every FLUSH_EVERY_S, or all at once when all are done:
        # one transaction per message when the upstream is fast.
        group = [results.get(timeout=stalled_after_s)]
        deadline = time.monotonic() + FLUSH_EVERY_S
        while len(group) < pending and (left := deadline - time.monotonic()) > 0:
            try:
                group.append(results.get(timeout=left))
            except Empty:
                break
        pending -= len(group)
        now = rt.clock()
        finished: list[Finished] = []
        paused: list[Park] = []
        for i, outcome in group:
            g = to_send[i]
            if isinstance(outcome, Deferred):
                paused.append(Park(g.claimed, now + timedelta(milliseconds=outcome.wait_ms), None))
                continue
            try:
                _learn_pause(g, outcome, rt, now)
                result = _after_401(g, outcome, batch, rt, now) or _result(g, outcome, rt, now)
            except Exception:
                # Nothing an upstream sends may crash a message or leave a call unfinished.
                result = _unprocessable(g)
            finished.append(_finished(g.claimed, started_at, result))
        _store(finished, rt, statuses)
        _park(paused, rt, now)
    return statuses


def _unprocessable(g: Go) -> Result:
    """The call's result when processing its outcome failed (a bug met by odd input): the
    call fails with the reason logged, scrubbed, instead of being left running."""
    log.error(
        "call %s: its outcome could not be processed\n%s",
        g.claimed.call.id,
        g.request.scrub.text(traceback.format_exc()),
    )
    return failed("internal_error", "passthru could not process the upstream's answer")


def _learn_pause(g: Go, outcome: Outcome, rt: Runtime, now: datetime) -> None:
    """An upstream that asks for quiet (429 / Retry-After, or its remaining count at zero)
    pauses the call's key for every worker, for at most the longest wait a call would
    accept (PASSTHRU_RETRY_MAX_WAIT_S)."""
    if rt.limiter is None or g.request.pause_key is None or not isinstance(outcome, Answer):
        return
    app = rt.catalog.get(g.claimed.call.app)
    asked_s = pause_asked_s(outcome, app.retry if app else RetrySpec(), now)
    if asked_s is None:
        return
    asked_s = min(asked_s, rt.retry_policy.max_wait_s)
    try:
        rt.limiter.pause(g.request.pause_key, int(asked_s * 1000))
    except RedisError as exc:
        log.warning("could not pause %s: %s", g.request.pause_key, exc)
    log.info(
        "%s paused for %.1f s: upstream answered %d", g.request.pause_key, asked_s, outcome.status
    )


def _park(items: list[Park], rt: Runtime, now: datetime) -> None:
    """Hand calls back unsent, each to come back for its slot; publish the ones due soon."""
    if not items:
        return
    parked = park(rt.engine, items, now, max_countdown_s=MAX_COUNTDOWN_S)
    for item in items:
        metrics.HANDED_BACK.labels(item.claimed.call.app).inc()
    if rt.republish is None:
        return
    # One message per lane and second of return: a backlog of one key is a few messages a
    # second, not one per call.
    groups: dict[tuple[str, int], list[str]] = {}
    for item in items:
        countdown = (item.come_back_at - now).total_seconds()
        if item.claimed.call.id in parked and countdown <= MAX_COUNTDOWN_S:
            groups.setdefault((_lane(item.claimed), math.ceil(countdown)), []).append(
                item.claimed.call.id
            )
    for (lane, countdown), ids in sorted(groups.items()):
        rt.republish(ids, lane, max(0, countdown))


def _result(g: Go, outcome: Outcome, rt: Runtime, now: datetime) -> Result:
    result = _decided(g.claimed, outcome, rt, now, g.request.scrub)
    if g.wait_ms:
        return replace(result, rate_wait_ms=g.wait_ms, rate_wait_reason=g.reason)
    return result


def _decided(
    c: Claimed, outcome: Outcome, rt: Runtime, now: datetime, scrub: Scrubber = NOTHING
) -> Result:
    app = rt.catalog.get(c.call.app)
    spec = app.retry if app else RetrySpec()
    decision = decide(
        outcome,
        c.attempt,
        method=c.call.method,
        has_idempotency_key=c.call.idempotency_key is not None,
        policy=policy_for(rt.retry_policy, spec, _option(c, "retry")),
        spec=spec,
        now=now,
        rng=rt.rng,
    )
    return classify(outcome, decision, now, scrub)


def _after_401(g: Go, outcome: Outcome, batch: _Batch, rt: Runtime, now: datetime) -> Result | None:
    """A 401 with an OAuth2 token that can be refreshed: refresh it and try again at once
    (a 401 says the request was not acted on). None: the answer goes the usual way."""
    c = g.claimed
    if not (isinstance(outcome, Answer) and outcome.status == 401) or rt.refresher is None:
        return None
    app = rt.catalog.get(c.call.app)
    used = batch.credentials.get(c.account.id) if c.account else None
    if app is None or c.account is None or not isinstance(used, OAuth2Credentials):
        return None
    try:
        fresh = rt.refresher.ensure_fresh(
            app, c.account.id, used, config=c.account.connection_config, after_401=True
        )
    except Revoked as exc:
        return failed("credentials_revoked", f"the refresh token was revoked ({exc}); {REAUTH}")
    except RefreshUnavailable:
        return None
    if fresh.access_token == used.access_token or c.attempt >= rt.retry_policy.max_attempts:
        return None
    batch.credentials[c.account.id] = fresh
    return classify(
        outcome, RetryIn(0.0, "upstream answered 401; token refreshed"), now, g.request.scrub
    )


def _lane(c: Claimed) -> str:
    return QUEUE_BULK if c.call.batch_id else QUEUE_INTERACTIVE


def _finished(c: Claimed, started_at: datetime, result: Result) -> Finished:
    return Finished(
        call_id=c.call.id,
        tenant_id=c.call.tenant_id,
        app=c.call.app,
        lane=_lane(c),
        account_id=c.account.id if c.account else None,
        attempt=c.attempt,
        started_at=started_at,
        result=result,
    )


def _count(item: Finished) -> None:
    app, r = item.app or "unknown", item.result
    metrics.ATTEMPTS.labels(app, metrics.outcome_label(r.network_code, r.error)).inc()
    if r.network_code is not None or r.error in ("timeout", "network_error"):
        metrics.UPSTREAM_SECONDS.labels(app).observe(r.duration_ms / 1000)
    if r.rate_wait_ms:
        metrics.RATE_LIMIT_WAIT_SECONDS.labels(app).observe(r.rate_wait_ms / 1000)
    if r.status.is_final:
        metrics.CALLS_FINISHED.labels(str(r.status), app).inc()


# A value the database (or its driver's encoder) refuses, as opposed to the database being
# away: StatementError wraps most; psycopg's executemany lets the JSON encoder's own errors
# through.
_REFUSED = (StatementError, TypeError, ValueError)


def _why(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return type(orig or exc).__name__


def _record(items: list[Finished], rt: Runtime, deliveries: list[str]) -> list[Finished]:
    """record(); if the database refuses a value (not the database being away), each call
    alone, a refused result replaced by a failure that says so: no answer, however odd,
    leaves its call unfinished. Returns what was stored, as it was stored."""
    try:
        stored = set(record(rt.engine, items, rt.clock(), rt.touched, deliveries))
        return [item for item in items if item.call_id in stored]
    except _REFUSED as exc:
        if isinstance(exc, OperationalError | InterfaceError):
            raise  # the database is away: the lease brings the calls back
        log.warning(
            "a group of %d results was refused (%s); storing them one by one",
            len(items),
            _why(exc),
        )
    out: list[Finished] = []
    for item in items:
        try:
            if record(rt.engine, [item], rt.clock(), rt.touched, deliveries):
                out.append(item)
        except _REFUSED as exc:
            if isinstance(exc, OperationalError | InterfaceError):
                raise
            log.error(
                "call %s: its result was refused by the database (%s)", item.call_id, _why(exc)
            )
            refused = replace(
                item,
                result=failed("unstorable_answer", "the upstream's answer could not be stored"),
            )
            if record(rt.engine, [refused], rt.clock(), rt.touched, deliveries):
                out.append(refused)
    return out


def _store(items: list[Finished], rt: Runtime, statuses: dict[str, CallStatus]) -> None:
    if not items:
        return
    deliveries: list[str] = []
    kept = _record(items, rt, deliveries)
    stored = {item.call_id for item in kept}
    if deliveries and rt.publish_webhooks is not None:
        rt.publish_webhooks(deliveries)
    for item in items:
        if item.call_id not in stored:
            log.warning("call %s was taken back before its result was stored", item.call_id)
    items = kept
    for item in items:
        r = item.result
        statuses[item.call_id] = r.status
        _count(item)
        log.info(
            "call %s %s",
            item.call_id,
            r.status,
            extra={
                "event": "call.finished" if r.status.is_final else "call.attempt",
                "call_id": item.call_id,
                "tenant_id": item.tenant_id,
                "app": item.app,
                "status": str(r.status),
                "attempt": item.attempt,
                "network_code": r.network_code,
                "error": r.error,
                "duration_ms": r.duration_ms,
                "rate_wait_ms": r.rate_wait_ms,
            },
        )
    finished = sorted(i.call_id for i in items if i.call_id in stored and i.result.status.is_final)
    if finished:
        rt.notify(finished)
    if rt.republish is not None:
        for item in items:
            r = item.result
            if item.call_id in stored and r.countdown_s is not None:
                rt.republish([item.call_id], item.lane, r.countdown_s)


def _prepare(claimed: Claimed, batch: _Batch) -> OnwardRequest | Result | Failure:
    """The request to send; a Result when the call cannot run; a Failure (decided on like a
    network one) when its token could not be refreshed just now."""
    call, account = claimed.call, claimed.account
    app = batch.rt.catalog.get(call.app)
    if app is None:
        return failed("app_unavailable", f"app {call.app!r} is no longer in the catalog")
    if account is None:
        return failed("account_missing", "the connected account was deleted")
    if account.status == AccountStatus.DISABLED:
        return failed("account_disabled", "the connected account was disabled")
    if account.status == AccountStatus.NEEDS_REAUTH:
        return failed("credentials_revoked", f"the account needs new credentials; {REAUTH}")
    try:
        credentials = batch.credentials_of(claimed, app)
        base_url, hosts = app.resolve(account.connection_config)
        return build_request(
            method=call.method,
            url=call.url,
            headers=call.request_headers,
            body=call.request_body,
            app=app,
            base_url=base_url,
            allowed_hosts=hosts,
            credentials=credentials,
            timeouts=resolve_timeouts(
                _option(claimed, "timeout"), app.timeouts, batch.rt.timeouts, batch.rt.max_timeout_s
            ),
        )
    except Revoked as exc:
        return failed("credentials_revoked", f"the refresh token was revoked ({exc}); {REAUTH}")
    except RefreshUnavailable as exc:
        return Failure("token_refresh_failed", str(exc), maybe_delivered=False, duration_ms=0)
    except (CredentialsError, ValueError) as exc:
        return failed("credentials_invalid", str(exc))
    except Exception as exc:
        # Stored data no request can be built from (a credential too long for a URL, say)
        # fails this call alone, never its message. Only the class is kept: the message of
        # an exception met while building may quote the credential.
        log.error("call %s: its request could not be built (%s)", call.id, type(exc).__name__)
        return failed("invalid_request", f"the request could not be built ({type(exc).__name__})")


def _option(c: Claimed, name: str) -> dict[str, Any] | None:
    """The call's own `retry` or `timeout` params, if it gave them."""
    options = c.call.options or {}
    value = options.get(name)
    return value if isinstance(value, dict) else None
