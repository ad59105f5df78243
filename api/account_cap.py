"""PASSTHRU_TENANT_MAX_ACCOUNTS: how many connected accounts one tenant may hold. Each read of
them is bounded by paging; this bounds what they cost to keep.

A tenant's accounts are counted on the index that leads with its id, reading at most
`cap + 1` entries, at most once per COUNT_TTL_S per tenant and API process; the accounts
this process creates meanwhile are added to the count, and those it deletes taken away.
Requests served at once, in one process or several, may pass the cap by what they create
before the count catches up: a bound on storage, not an exact quota.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine, column, func, literal_column, select, table

from api.prometheus import REQUESTS_REFUSED
from models.db.engine import read_connection
from models.errors import ApiError, ErrorDetail

COUNT_TTL_S = 10.0
# Tenants whose counts a process keeps; the oldest is forgotten beyond (read again if needed).
MAX_TENANTS = 10_000

_accounts = table("connected_account", column("tenant_id"))


def count_accounts(engine: Engine, tenant_id: str, cap: int) -> int:
    """The tenant's accounts, counted up to `cap + 1`."""
    rows = (
        select(literal_column("1"))
        .select_from(_accounts)
        .where(_accounts.c.tenant_id == tenant_id)
        .limit(cap + 1)
        .subquery()
    )
    with read_connection(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(rows)).scalar_one())


@dataclass
class AccountCap:
    engine: Engine
    cap: int
    monotonic: Callable[[], float] = time.monotonic
    _counts: dict[str, tuple[float, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, tenant_id: str) -> None:
        """Refuse (403 `account_limit_reached`, naming `connected_accounts`) a new account
        for a tenant at the cap. Not a 429: waiting frees nothing, so clients must not retry."""
        with self._lock:
            known = self._counts.get(tenant_id)
        if known is None or known[0] <= self.monotonic():
            count = count_accounts(self.engine, tenant_id, self.cap)
            with self._lock:
                self._counts.pop(tenant_id, None)
                if len(self._counts) >= MAX_TENANTS:
                    del self._counts[next(iter(self._counts))]
                self._counts[tenant_id] = (self.monotonic() + COUNT_TTL_S, count)
                known = self._counts[tenant_id]
        if known[1] >= self.cap:
            raise self.refusal()

    def added(self, tenant_id: str) -> None:
        """An account of the tenant was created by this process."""
        self._shift(tenant_id, 1)

    def removed(self, tenant_id: str) -> None:
        """An account of the tenant was deleted by this process."""
        self._shift(tenant_id, -1)

    def _shift(self, tenant_id: str, by: int) -> None:
        with self._lock:
            known = self._counts.get(tenant_id)
            if known is not None:
                self._counts[tenant_id] = (known[0], max(0, known[1] + by))

    def refusal(self) -> ApiError:
        REQUESTS_REFUSED.labels("accounts").inc()
        message = (
            f"a tenant holds at most {self.cap} connected accounts "
            "(PASSTHRU_TENANT_MAX_ACCOUNTS); delete the ones no longer used"
        )
        return ApiError("account_limit_reached", [ErrorDetail("connected_accounts", message)], 403)
