"""`GET /rate-limits`: a tenant's limiter state, per app and account, read from Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from models.catalog.apps import App, Catalog, RateLimitSpec
from models.db.tables import ConnectedAccount, Tenant
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


def _when(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def rate_limits(
    engine: Engine,
    catalog: Catalog,
    limiter: Limiter,
    tenant: Tenant,
    tenant_cap: RateLimitSpec | None = None,
) -> dict[str, Any]:
    with Session(engine) as session:
        accounts = list(
            session.exec(
                select(ConnectedAccount)
                .where(col(ConnectedAccount.tenant_id) == tenant.id)
                .order_by(col(ConnectedAccount.app), col(ConnectedAccount.id))
            )
        )
    # One entry per (app, account); app-wide limits and pauses appear on each of the
    # tenant's accounts of that app, as they hold back those accounts' calls.
    entries: list[tuple[App, ConnectedAccount, list[tuple[dict[str, Any], Rule]], str]] = []
    for account in accounts:
        app = catalog.get(account.app)
        if app is None:
            continue
        rules = []
        for index, spec in enumerate(app.rate_limits):
            key = limit_key(app.slug, index, spec, tenant.id, account.id)
            rules.append((spec.model_dump(mode="json"), rule_of(spec, key, app.slug)))
        entries.append((app, account, rules, pause_key(app, account.id)))
    keys = [k for _, _, rules, pause in entries for k in (*(r.key for _, r in rules), pause)]
    caps = [tenant_cap_rule(tenant_cap, tenant.id, lane) for lane in LANES] if tenant_cap else []
    keys += [cap.key for cap in caps]
    now_ms, values = limiter.read(keys)
    stored = dict(zip(keys, values, strict=True))
    out = []
    for app, account, rules, pause in entries:
        paused_until = stored.get(pause)
        if not rules and paused_until is None:
            continue
        limits = []
        for declared, rule in rules:
            use = usage(rule, stored.get(rule.key), now_ms)
            limits.append(
                {
                    **declared,
                    "burst": declared.get("burst") or 1,
                    "in_use": use.booked_ahead,
                    "next_free_in_ms": use.next_free_ms,
                }
            )
        out.append(
            {
                "app": app.slug,
                "connected_account_id": account.id,
                "user_id": account.user_id,
                "paused_until": _when(paused_until),
                "limits": limits,
            }
        )
    cap_out = None
    if tenant_cap is not None:
        cap_out = {
            "limit": tenant_cap.limit,
            "period_s": tenant_cap.period_s,
            "burst": tenant_cap.burst or 1,
            "lanes": {
                lane: {
                    "in_use": (use := usage(cap, stored.get(cap.key), now_ms)).booked_ahead,
                    "next_free_in_ms": use.next_free_ms,
                }
                for lane, cap in zip(LANES, caps, strict=True)
            },
        }
    return {"as_of": _when(now_ms), "tenant_cap": cap_out, "items": out}
