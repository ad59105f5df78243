"""The order a worker asks Redis for messages in (kombu's `queue_order_strategy`): upkeep
first (the sweeper, which takes back what dead workers held, and the purge: a message every
few seconds), then the interactive lane's queue; then the bulk lane's queues and the
webhooks' in turn, the one a message last came from going to the end; then any other queue
the worker consumes. Redis' BRPOP answers from the first of its keys with a message, so a
free thread takes a sweep or a delayed interactive call before any bulk message, and a
deep bulk queue never keeps a sweep or another tenant's webhook waiting for the whole drain
(a webhook's message only hands its delivery to the worker's loop: it never holds a thread).
"""

from __future__ import annotations

from models.keys import BULK_QUEUES, QUEUE_INTERACTIVE, QUEUE_MAINTENANCE, QUEUE_WEBHOOKS

_FIRST = (QUEUE_MAINTENANCE, QUEUE_INTERACTIVE)
_IN_TURN = frozenset((*BULK_QUEUES, QUEUE_WEBHOOKS))


class InteractiveFirst:
    """kombu's cycle interface (`kombu.utils.scheduling.round_robin_cycle`'s): `update`
    with the queues consumed, `consume` for the order of the next BRPOP, `rotate` with the
    queue a message came from."""

    def __init__(self, it: list[str] | None = None) -> None:
        self.items: list[str] = list(it or [])
        self._turn: list[str] = []  # the queues in turn, the next one to ask first

    def update(self, it: list[str]) -> None:
        self.items[:] = it

    def consume(self, n: int) -> list[str]:
        queues = self.items[:n]
        in_turn = [q for q in queues if q in _IN_TURN]
        self._turn = [q for q in self._turn if q in in_turn] + [
            q for q in in_turn if q not in self._turn
        ]
        first = [q for q in _FIRST if q in queues]
        rest = [q for q in queues if q not in _FIRST and q not in _IN_TURN]
        return first + self._turn + rest

    def rotate(self, last_used: str) -> str:
        if last_used in self._turn:
            self._turn.remove(last_used)
            self._turn.append(last_used)
        return last_used
