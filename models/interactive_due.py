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

The bulk lane keeps its chunks of ids the same way (`BulkDue`, on keys of its own): a take
there sets the chunk as a field of the taking process's hash of held messages instead
(worker/held.py), under the id of the Celery message that took it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

import redis

from models.keys import (
    BULK_CHUNK,
    BULK_DUE_OF_PREFIX,
    BULK_DUE_TENANTS,
    DUE_OF_PREFIX,
    DUE_TENANTS,
    LIST_INTERACTIVE,
)

# Ids whose tenant the publisher does not know share this bucket, in turn like a tenant.
UNKNOWN_TENANT: Final = "-"
# Ids pushed per script call: Lua's unpack() has a limit of a few thousand values.
PUSH_CHUNK = 1_000

# KEYS: the turn, the tenant's list. ARGV: the tenant, where the items go ('first': at the
# head, given last one first; else at the tail), then the items. A tenant whose list had
# items is in turn already, unless the turn was lost (deleted, or evicted by a Redis not set
# to `noeviction`): then it is put back, so its items are never left where no take looks.
_PUSH = """
local push = ARGV[2] == 'first' and 'LPUSH' or 'RPUSH'
local n = redis.call(push, KEYS[2], unpack(ARGV, 3))
if n == #ARGV - 2 or not redis.call('LPOS', KEYS[1], ARGV[1]) then
  redis.call('RPUSH', KEYS[1], ARGV[1])
end
return n
"""

# KEYS: the turn, where a taken item is held (a list, or a hash when ARGV[2] names its
# field; '': nowhere, the item is only popped), then the lane's former list if it has one.
# ARGV: the prefix of tenants' lists, the held field ('' for a list), the held hash's time
# to live, then the tenants to skip.
# Returns {tenant, item}; or 1 when only skipped tenants are due; or 0 when nothing is.
# Held in a hash, the item is stored as `{tenant}:{item}`, and a field already set is
# returned as it is, nothing more taken: a take sent again under the same field (its reply
# lost, say) takes nothing twice.
_TAKE = """
if ARGV[2] ~= '' then
  local held = redis.call('HGET', KEYS[2], ARGV[2])
  if held then
    local tenant, item = string.match(held, '^(.*):([^:]*)$')
    return {tenant, item}
  end
end
local skip = {}
for i = 4, #ARGV do
  skip[ARGV[i]] = true
end
local function hold(list, tenant)
  if KEYS[2] == '' then
    return redis.call('LPOP', list)
  end
  if ARGV[2] == '' then
    return redis.call('LMOVE', list, KEYS[2], 'LEFT', 'RIGHT')
  end
  local item = redis.call('LPOP', list)
  if item then
    redis.call('HSET', KEYS[2], ARGV[2], tenant .. ':' .. item)
    redis.call('EXPIRE', KEYS[2], ARGV[3])
  end
  return item
end
local skipped = 0
for _ = 1, redis.call('LLEN', KEYS[1]) do
  local tenant = redis.call('LMOVE', KEYS[1], KEYS[1], 'LEFT', 'RIGHT')
  if skip[tenant] then
    skipped = skipped + 1
  else
    local list = ARGV[1] .. tenant
    local item = hold(list, tenant)
    if redis.call('LLEN', list) == 0 then
      redis.call('LREM', KEYS[1], -1, tenant)
    end
    if item then
      return {tenant, item}
    end
  end
end
if skipped > 0 then
  return 1
end
if KEYS[3] then
  local item = hold(KEYS[3], '-')
  if item then
    return {'-', item}
  end
end
return 0
"""


# KEYS: the turn, a hash of held items. ARGV: the prefix of tenants' lists, then fields of
# the hash. Each field's item goes back to the head of its tenant's list, the tenant into the
# turn if it is not there, and the field is deleted. Returns how many items went back.
_GIVE_BACK = """
local n = 0
for i = 2, #ARGV do
  local held = redis.call('HGET', KEYS[2], ARGV[i])
  if held then
    local tenant, item = string.match(held, '^(.*):([^:]*)$')
    redis.call('LPUSH', ARGV[1] .. tenant, item)
    if not redis.call('LPOS', KEYS[1], tenant) then
      redis.call('RPUSH', KEYS[1], tenant)
    end
    redis.call('HDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
"""


def due_list(tenant_id: str) -> str:
    return f"{DUE_OF_PREFIX}{tenant_id}"


@dataclass(frozen=True)
class Taken:
    tenant_id: str
    call_id: str  # on the bulk lane, a chunk: its ids joined by commas


class Due(Enum):
    """What `take` found when it took nothing."""

    SKIPPED = "only tenants it was told to skip have calls due"
    NOTHING = "no call is due"


class TenantLists:
    """Items on a list per tenant (`{prefix}{tenant id}`) and the tenants with items in
    turn on `turn_key`, through one Redis client (whose errors the callers handle); items
    on `former_list` are taken once no tenant has any."""

    def __init__(
        self, client: redis.Redis, turn_key: str, prefix: str, former_list: str | None = None
    ) -> None:
        self._client = client
        self._turn_key = turn_key
        self._prefix = prefix
        self._former = former_list
        self._push = client.register_script(_PUSH)
        self._take = client.register_script(_TAKE)
        self._give_back = client.register_script(_GIVE_BACK)

    def push_items(self, by_tenant: Mapping[str, Sequence[str]], first: bool = False) -> None:
        """Append each tenant's items to its list (`first`: put them at its head, in their
        order, before the ones there): one EVALSHA for one tenant's few items, else one
        pipeline (which first asks whether Redis has the script: a round trip more)."""
        side = "first" if first else "last"
        pushes = [
            (
                [self._turn_key, f"{self._prefix}{tenant_id}"],
                [tenant_id, side, *(reversed(part) if first else part)],
            )
            for tenant_id, items in by_tenant.items()
            for part in _parts(items, first)
        ]
        if len(pushes) == 1:
            self._push(keys=pushes[0][0], args=pushes[0][1])
            return
        with self._client.pipeline(transaction=False) as pipe:
            for keys, args in pushes:
                self._push(keys=keys, args=args, client=pipe)
            pipe.execute()

    def take(
        self, held_key: str, skip: Collection[str] = (), field: str = "", expire_s: int = 0
    ) -> Taken | Due:
        """The next tenant's oldest item, skipping the tenants in `skip`: moved onto the
        list `held_key`, or, given a `field`, set as that field of the hash `held_key`
        (which then lives `expire_s`); with `held_key` "", held nowhere."""
        keys = [self._turn_key, held_key, *([self._former] if self._former else [])]
        found = self._take(keys=keys, args=[self._prefix, field, expire_s, *skip])
        if isinstance(found, list):
            tenant_id, item = (as_text(v) for v in found)
            return Taken(tenant_id, item)
        return Due.SKIPPED if found == 1 else Due.NOTHING

    def give_back(self, held_key: str, fields: Collection[str]) -> int:
        """Put the items held under `fields` of the hash `held_key` back at the head of their
        tenants' lists, taken by no one; how many there were."""
        if not fields:
            return 0
        return int(self._give_back(keys=[self._turn_key, held_key], args=[self._prefix, *fields]))

    def wait(self, timeout_s: int) -> bool:
        """Block until some tenant has items (True), or `timeout_s` passes (False)."""
        turn = self._turn_key
        return self._client.blmove(turn, turn, timeout_s, "LEFT", "RIGHT") is not None

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    def depth(self) -> int:
        """How many items wait, over every tenant (and the former list)."""
        tenants = self._client.lrange(self._turn_key, 0, -1)
        with self._client.pipeline(transaction=False) as pipe:
            for tenant_id in tenants:
                pipe.llen(f"{self._prefix}{as_text(tenant_id)}")
            if self._former:
                pipe.llen(self._former)
            return sum(int(n) for n in pipe.execute())


def _parts(items: Sequence[str], first: bool) -> list[Sequence[str]]:
    """`items` in parts of PUSH_CHUNK, the last part first when they go to a list's head."""
    parts = [items[start : start + PUSH_CHUNK] for start in range(0, len(items), PUSH_CHUNK)]
    return parts[::-1] if first else parts


def by_tenant(call_ids: Sequence[str], tenant_of: Mapping[str, str]) -> dict[str, list[str]]:
    """The ids by their tenant (UNKNOWN_TENANT where `tenant_of` does not say)."""
    by_tenant: dict[str, list[str]] = {}
    for call_id in call_ids:
        by_tenant.setdefault(tenant_of.get(call_id) or UNKNOWN_TENANT, []).append(call_id)
    return by_tenant


class InteractiveDue(TenantLists):
    """The interactive lane's calls due now: a call id per item."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, DUE_TENANTS, DUE_OF_PREFIX, LIST_INTERACTIVE)

    def push(self, call_ids: Sequence[str], tenant_of: Mapping[str, str]) -> None:
        """Append `call_ids` to their tenants' lists."""
        if call_ids:
            self.push_items(by_tenant(call_ids, tenant_of))


class BulkDue(TenantLists):
    """The bulk lane's chunks of at most BULK_CHUNK call ids, one per item (the ids joined by
    commas), tenant by tenant: the Celery message that runs one carries no ids, it takes
    the next tenant's oldest chunk (worker/bulk_turns.py)."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, BULK_DUE_TENANTS, BULK_DUE_OF_PREFIX)

    def push(
        self, call_ids: Sequence[str], tenant_of: Mapping[str, str], first: bool = False
    ) -> int:
        """Append `call_ids` to their tenants' lists in chunks (`first`: at their heads, for
        calls that had their turn already); how many chunks."""
        chunks = {
            tenant_id: [",".join(ids[i : i + BULK_CHUNK]) for i in range(0, len(ids), BULK_CHUNK)]
            for tenant_id, ids in by_tenant(call_ids, tenant_of).items()
        }
        self.push_items(chunks, first)
        return sum(len(c) for c in chunks.values())


def held_ids(value: bytes | str) -> list[str]:
    """The call ids of a value of a hash of held messages: a chunk taken from the bulk lane
    (`{tenant}:{ids}`), or a Celery message's ids (worker/held.py), joined by commas."""
    return [i for i in as_text(value).rpartition(":")[2].split(",") if i]


def as_text(value: bytes | str) -> str:
    """A Redis value (bytes from a client that does not decode) as text."""
    return value.decode() if isinstance(value, bytes) else value
