"""`GET /rate-limits`: a tenant's limiter state, per app and account, read from Redis in one
round trip, for one page of its accounts at a time (`api/account_pages.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from sqlalchemy import Engine

from api.account_pages import PAGE_SIZE, AccountFilter, list_accounts
from api.schemas.ratelimits import AccountLimits, LaneUse, LimitUse, RateLimits, TenantCap
from models.catalog.apps import App, Catalog
from models.catalog.spec import RateLimitSpec
from models.db.tables import ConnectedAccount, Tenant
from models.errors import ApiError, ErrorDetail
from models.ratelimit.rules import (
    LANES,
    Rule,
    limit_key,
    pause_key,
    rule_of,
    tenant_cap_rule,
    usage,
)
from models.ratelimit.store import Limiter

# Each key read, and what it holds (a TAT or the end of a pause, in ms; None: nothing).
Stored = dict[str, int | None]


@dataclass(frozen=True)
class _Entry:
    """One of the tenant's accounts, with the keys of its app's limits and of its pause."""

    app: App
    account: ConnectedAccount
    rules: list[tuple[RateLimitSpec, Rule]]
    pause_key: str


def rate_limits(
    engine: Engine,
    catalog: Catalog,
    limiter: Limiter,
    tenant: Tenant,
    tenant_cap: RateLimitSpec | None,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
) -> RateLimits:
    """Of a page of the tenant's accounts (`limit` of them, newest first, from after
    `cursor`), each one whose app declares limits or is paused, with each limit's use; and
    the operator's cap on the tenant (`tenant_cap`), if any, per lane. The Redis read is of
    that page's keys alone; a page may show fewer items than it read accounts."""
    accounts, next_cursor = list_accounts(engine, tenant, AccountFilter(), cursor, limit)
    entries = _entries(catalog, tenant, accounts)
    caps = [tenant_cap_rule(tenant_cap, tenant.id, lane) for lane in LANES] if tenant_cap else []
    keys = [k for e in entries for k in (*(rule.key for _, rule in e.rules), e.pause_key)]
    keys += [cap.key for cap in caps]
    now_ms, values = limiter.read(keys)
    stored: Stored = dict(zip(keys, values, strict=True))
    return RateLimits(
        as_of=_iso(now_ms),
        tenant_cap=_tenant_cap(tenant_cap, caps, stored, now_ms) if tenant_cap else None,
        items=[item for e in entries if (item := _account_limits(e, stored, now_ms)) is not None],
        next_cursor=next_cursor,
    )


def unavailable(exc: redis.RedisError) -> ApiError:
    """The 503 for a Redis that did not answer: it names the error's class only, as its
    message names internal hosts and ports."""
    return ApiError(
        "rate_limiter_unavailable",
        [ErrorDetail("redis", f"Redis did not answer ({type(exc).__name__}); try again shortly")],
        503,
    )


def _entries(catalog: Catalog, tenant: Tenant, accounts: list[ConnectedAccount]) -> list[_Entry]:
    """One entry per account of a catalog app. App-wide limits and pauses appear on each of
    the tenant's accounts of that app, as they hold back those accounts' calls."""
    entries = []
    for account in accounts:
        app = catalog.get(account.app)
        if app is None:
            continue
        rules = [
            (spec, rule_of(spec, limit_key(app.slug, index, spec, tenant.id, account.id), app.slug))
            for index, spec in enumerate(app.rate_limits)
        ]
        entries.append(_Entry(app, account, rules, pause_key(app, account.id)))
    return entries


def _account_limits(entry: _Entry, stored: Stored, now_ms: int) -> AccountLimits | None:
    """The entry as shown, or None for an app that declares no limits and is not paused."""
    paused_until = stored.get(entry.pause_key)
    if not entry.rules and paused_until is None:
        return None
    limits = []
    for spec, rule in entry.rules:
        use = usage(rule, stored.get(rule.key), now_ms)
        limits.append(
            LimitUse(
                scope=spec.scope,
                limit=spec.limit,
                period_s=spec.period_s,
                path=spec.path,
                burst=spec.burst or 1,
                in_use=use.booked_ahead,
                next_free_in_ms=use.next_free_ms,
            )
        )
    return AccountLimits(
        app=entry.app.slug,
        connected_account_id=entry.account.id,
        user_id=entry.account.user_id,
        paused_until=None if paused_until is None else _iso(paused_until),
        limits=limits,
    )


def _tenant_cap(spec: RateLimitSpec, caps: list[Rule], stored: Stored, now_ms: int) -> TenantCap:
    lanes = {}
    for lane, cap in zip(LANES, caps, strict=True):
        use = usage(cap, stored.get(cap.key), now_ms)
        lanes[lane] = LaneUse(in_use=use.booked_ahead, next_free_in_ms=use.next_free_ms)
    return TenantCap(limit=spec.limit, period_s=spec.period_s, burst=spec.burst or 1, lanes=lanes)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
