"""The order a worker asks Redis for messages in (kombu's `queue_order_strategy`): the
interactive lane's queue first, always; then the bulk lane's shards in turn, the one a
message last came from going to the end; then the other queues in the order the worker
consumes them. Redis' BRPOP answers from the first of its keys with a message, so a free
thread takes a delayed interactive call before any bulk message, and one tenant's backlog,
on one shard, is taken no more often than any other shard with messages.
"""

from __future__ import annotations

from models.keys import BULK_QUEUES, QUEUE_INTERACTIVE

_BULK = frozenset(BULK_QUEUES)


class InteractiveFirst:
    """kombu's cycle interface (`kombu.utils.scheduling.round_robin_cycle`'s): `update`
    with the queues consumed, `consume` for the order of the next BRPOP, `rotate` with the
    queue a message came from."""

    def __init__(self, it: list[str] | None = None) -> None:
        self.items: list[str] = list(it or [])
        self._turn: list[str] = []  # the bulk shards, the next one to ask first

    def update(self, it: list[str]) -> None:
        self.items[:] = it

    def consume(self, n: int) -> list[str]:
        queues = self.items[:n]
        bulk = [q for q in queues if q in _BULK]
        self._turn = [q for q in self._turn if q in bulk] + [q for q in bulk if q not in self._turn]
        first = [q for q in queues if q == QUEUE_INTERACTIVE]
        rest = [q for q in queues if q != QUEUE_INTERACTIVE and q not in _BULK]
        return first + self._turn + rest

    def rotate(self, last_used: str) -> str:
        if last_used in self._turn:
            self._turn.remove(last_used)
            self._turn.append(last_used)
        return last_used
