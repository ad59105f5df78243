"""Who an API key belongs to, remembered briefly so the hot path skips a query; and which
key hashes were just refused, so a client repeating a wrong key costs no query either.

A key removed from the database keeps working in a process for at most TTL_S. A key hash
once valid stays *known* after its entry expires (within MAX_ENTRIES): its next lookup goes
ahead of lookups of keys this process has never seen valid (`api/key_lookups.py`).
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
# How long a refused key hash is refused without asking again, and how many are kept. A
# key is 256 random bits: one refused now is not a key that a tenant will be given later.
REFUSED_TTL_S = 10.0
MAX_REFUSED = 4096


class TenantCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Tenant]] = OrderedDict()
        self._refused: OrderedDict[str, float] = OrderedDict()
        self._lock = Lock()

    def get(self, key_hash: str) -> Tenant | None:
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is None or entry[0] < self._clock():
                return None
            return entry[1]

    def known(self, key_hash: str) -> bool:
        """Whether this key hash was valid here lately (its entry may have expired)."""
        with self._lock:
            return key_hash in self._entries

    def refused(self, key_hash: str) -> bool:
        """Whether the database refused this key hash less than REFUSED_TTL_S ago."""
        with self._lock:
            until = self._refused.get(key_hash)
            if until is None:
                return False
            if until < self._clock():
                del self._refused[key_hash]
                return False
            return True

    def put(self, key_hash: str, tenant: Tenant) -> None:
        with self._lock:
            self._refused.pop(key_hash, None)
            self._entries[key_hash] = (self._clock() + TTL_S, tenant)
            self._entries.move_to_end(key_hash)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def refuse(self, key_hash: str) -> None:
        """The database has no tenant for this key hash (any more)."""
        with self._lock:
            self._entries.pop(key_hash, None)
            self._refused[key_hash] = self._clock() + REFUSED_TTL_S
            self._refused.move_to_end(key_hash)
            while len(self._refused) > MAX_REFUSED:
                self._refused.popitem(last=False)


def lookup(engine: Engine, key_hash: str) -> Tenant | None:
    with read_session(engine) as session:
        return session.exec(select(Tenant).where(Tenant.api_key_hash == key_hash)).first()
