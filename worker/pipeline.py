"""One call, start to end: claim -> resolve credentials -> build -> send -> classify ->
record -> notify. Every effect comes in through `Runtime`, so tests inject them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx
from sqlalchemy import Engine

from models.catalog import Catalog
from models.credentials import load_credentials
from models.errors import CredentialsError
from models.secrets import Vault
from models.states import CallStatus
from worker.claim import Claimed, claim
from worker.onward import build_request
from worker.outcome import classify, failed
from worker.record import Result, record
from worker.send import SendPolicy, send

log = logging.getLogger("passthru.worker")


@dataclass(frozen=True)
class Runtime:
    engine: Engine
    client: httpx.Client
    catalog: Catalog
    vault: Vault
    send_policy: SendPolicy
    lease_s: float
    clock: Callable[[], datetime]
    notify: Callable[[str], None]


def execute_call(call_id: str, rt: Runtime) -> CallStatus | None:
    """Run the call if it is claimable; return its new status, or None if not ours."""
    started_at = rt.clock()
    claimed = claim(rt.engine, call_id, now=started_at, lease_s=rt.lease_s)
    if claimed is None:
        log.info("call %s not claimable (already taken, finished or cancelled)", call_id)
        return None
    result = _attempt(claimed, rt)
    stored = record(
        rt.engine,
        call_id=call_id,
        account_id=claimed.account.id if claimed.account else None,
        attempt=claimed.attempt,
        started_at=started_at,
        result=result,
        now=rt.clock(),
    )
    if not stored:
        log.warning("call %s was taken back before its result was stored", call_id)
        return None
    log.info(
        "call %s %s network_code=%s error=%s duration_ms=%d",
        call_id,
        result.status,
        result.network_code,
        result.error,
        result.duration_ms,
    )
    rt.notify(call_id)
    return result.status


def _attempt(claimed: Claimed, rt: Runtime) -> Result:
    call, account = claimed.call, claimed.account
    app = rt.catalog.get(call.app)
    if app is None:
        return failed("app_unavailable", f"app {call.app!r} is no longer in the catalog")
    if account is None:
        return failed("account_missing", "the connected account was deleted")
    try:
        credentials = load_credentials(rt.vault.decrypt(account.credentials_enc))
        _, hosts = app.resolve(account.connection_config)
    except (CredentialsError, ValueError) as exc:
        return failed("credentials_invalid", str(exc))
    request = build_request(
        method=call.method,
        url=call.url,
        headers=call.request_headers,
        body=call.request_body,
        app=app,
        allowed_hosts=hosts,
        credentials=credentials,
    )
    return classify(send(rt.client, request, rt.send_policy))
