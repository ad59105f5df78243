"""The interactive lane's calls due now, kept in Redis tenant by tenant, so that one tenant's
backlog never stands in front of another tenant's call.

Each tenant with calls due has a list of their ids (`{DUE_OF_PREFIX}{tenant id}`) and one
entry on DUE_TENANTS, the tenants in turn. A push appends the ids and, when the tenant's
list was empty, the tenant to the turn; a take moves the first tenant of the turn to its
end and that tenant's oldest id onto the taking process's held list (worker/held.py), and
takes the tenant off the turn when its list is empty. Both are one Lua script, so the turn
holds a tenant exactly when its list holds ids, whoever pushes and takes at once.

A take skips the tenants it is told to (those that hold their share of the taking process's
threads already, worker/lane.py) and says when only such tenants are due, so the process
waits for one of its own calls to end, not on Redis. Ids published without their tenant
(none today; an older API process's, on LIST_INTERACTIVE) are taken after every tenant's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

import redis

from models.keys import DUE_OF_PREFIX, DUE_TENANTS, LIST_INTERACTIVE

# Ids whose tenant the publisher does not know share this bucket, in turn like a tenant.
UNKNOWN_TENANT: Final = "-"
# Ids pushed per script call: Lua's unpack() has a limit of a few thousand values.
PUSH_CHUNK = 1_000

# KEYS: the turn, the tenant's list. ARGV: the tenant, then the ids.
_PUSH = """
local n = redis.call('RPUSH', KEYS[2], unpack(ARGV, 2))
if n == #ARGV - 1 then
  redis.call('RPUSH', KEYS[1], ARGV[1])
end
return n
"""

# KEYS: the turn, the held list, the lane's former list. ARGV: the prefix of tenants' lists,
# then the tenants to skip. Returns {tenant, id}; or 1 when only skipped tenants are due; or
# 0 when nothing is.
_TAKE = """
local skip = {}
for i = 2, #ARGV do
  skip[ARGV[i]] = true
end
local skipped = 0
for _ = 1, redis.call('LLEN', KEYS[1]) do
  local tenant = redis.call('LMOVE', KEYS[1], KEYS[1], 'LEFT', 'RIGHT')
  if skip[tenant] then
    skipped = skipped + 1
  else
    local list = ARGV[1] .. tenant
    local id = redis.call('LMOVE', list, KEYS[2], 'LEFT', 'RIGHT')
    if redis.call('LLEN', list) == 0 then
      redis.call('LREM', KEYS[1], -1, tenant)
    end
    if id then
      return {tenant, id}
    end
  end
end
if skipped > 0 then
  return 1
end
local id = redis.call('LMOVE', KEYS[3], KEYS[2], 'LEFT', 'RIGHT')
if id then
  return {'-', id}
end
return 0
"""


def due_list(tenant_id: str) -> str:
    return f"{DUE_OF_PREFIX}{tenant_id}"


@dataclass(frozen=True)
class Taken:
    tenant_id: str
    call_id: str


class Due(Enum):
    """What `take` found when it took nothing."""

    SKIPPED = "only tenants it was told to skip have calls due"
    NOTHING = "no call is due"


class InteractiveDue:
    """The lists, through one Redis client (whose errors the callers handle)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._push = client.register_script(_PUSH)
        self._take = client.register_script(_TAKE)

    def push(self, call_ids: Sequence[str], tenant_of: Mapping[str, str]) -> None:
        """Append `call_ids` to their tenants' lists (UNKNOWN_TENANT's where `tenant_of`
        does not say): one EVALSHA for one tenant's few ids (a single call), else one
        pipeline (which first asks whether Redis has the script: a round trip more)."""
        by_tenant: dict[str, list[str]] = {}
        for call_id in call_ids:
            by_tenant.setdefault(tenant_of.get(call_id) or UNKNOWN_TENANT, []).append(call_id)
        pushes = [
            ([DUE_TENANTS, due_list(tenant_id)], [tenant_id, *ids[start : start + PUSH_CHUNK]])
            for tenant_id, ids in by_tenant.items()
            for start in range(0, len(ids), PUSH_CHUNK)
        ]
        if len(pushes) == 1:
            self._push(keys=pushes[0][0], args=pushes[0][1])
            return
        with self._client.pipeline(transaction=False) as pipe:
            for keys, args in pushes:
                self._push(keys=keys, args=args, client=pipe)
            pipe.execute()

    def take(self, held_key: str, skip: Collection[str] = ()) -> Taken | Due:
        """The next tenant's oldest id, moved onto `held_key`, skipping the tenants in
        `skip`."""
        found = self._take(
            keys=[DUE_TENANTS, held_key, LIST_INTERACTIVE], args=[DUE_OF_PREFIX, *skip]
        )
        if isinstance(found, list):
            tenant_id, call_id = (as_text(v) for v in found)
            return Taken(tenant_id, call_id)
        return Due.SKIPPED if found == 1 else Due.NOTHING

    def wait(self, timeout_s: int) -> bool:
        """Block until some tenant has calls due (True), or `timeout_s` passes (False)."""
        return self._client.blmove(DUE_TENANTS, DUE_TENANTS, timeout_s, "LEFT", "RIGHT") is not None

    def depth(self) -> int:
        """How many ids are due, over every tenant (and the former list)."""
        tenants = self._client.lrange(DUE_TENANTS, 0, -1)
        with self._client.pipeline(transaction=False) as pipe:
            for tenant_id in tenants:
                pipe.llen(due_list(as_text(tenant_id)))
            pipe.llen(LIST_INTERACTIVE)
            return sum(int(n) for n in pipe.execute())


def as_text(value: bytes | str) -> str:
    """A Redis value (bytes from a client that does not decode) as text."""
    return value.decode() if isinstance(value, bytes) else value
