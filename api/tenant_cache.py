"""Who an API key belongs to, remembered briefly so the hot path skips a query.

A key removed from the database keeps working in a process for at most TTL_S.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from threading import Lock

from sqlalchemy import Engine
from sqlmodel import select

from models.db.engine import read_session
from models.db.tables import Tenant

# How long a verified key is trusted without asking the database again.
TTL_S = 10.0
MAX_ENTRIES = 4096


class TenantCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Tenant]] = OrderedDict()
        self._lock = Lock()

    def get(self, key_hash: str) -> Tenant | None:
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is None or entry[0] < self._clock():
                return None
            return entry[1]

    def put(self, key_hash: str, tenant: Tenant) -> None:
        with self._lock:
            self._entries[key_hash] = (self._clock() + TTL_S, tenant)
            self._entries.move_to_end(key_hash)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)


def lookup(engine: Engine, key_hash: str) -> Tenant | None:
    with read_session(engine) as session:
        return session.exec(select(Tenant).where(Tenant.api_key_hash == key_hash)).first()
