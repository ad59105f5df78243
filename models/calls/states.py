"""The call state machine: every status change goes through `transition` or `sources_of`.

  queued <─> running ──> completed
    │           │  └───> failed
    │           v    ^
    │        retrying ─┘   (running -> retrying also when a lost lease is recovered)
    v           │
cancelled <─────┘          queued|retrying -> failed (credentials revoked, expired)

running -> queued (or -> retrying after earlier attempts): handed back before it was sent,
to wait for its rate-limit slot; not an attempt.
"""

from __future__ import annotations

from enum import StrEnum

from models.errors import IllegalTransition


class CallStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL


FINAL = frozenset({CallStatus.COMPLETED, CallStatus.FAILED, CallStatus.CANCELLED})

TRANSITIONS: dict[CallStatus, frozenset[CallStatus]] = {
    CallStatus.QUEUED: frozenset({CallStatus.RUNNING, CallStatus.CANCELLED, CallStatus.FAILED}),
    CallStatus.RUNNING: frozenset(
        {CallStatus.COMPLETED, CallStatus.FAILED, CallStatus.RETRYING, CallStatus.QUEUED}
    ),
    CallStatus.RETRYING: frozenset({CallStatus.RUNNING, CallStatus.CANCELLED, CallStatus.FAILED}),
    CallStatus.COMPLETED: frozenset(),
    CallStatus.FAILED: frozenset(),
    CallStatus.CANCELLED: frozenset(),
}


def transition(current: CallStatus, target: CallStatus) -> CallStatus:
    """Return `target` if the move is allowed, else raise IllegalTransition."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(f"a call cannot go from {current} to {target}")
    return target


def sources_of(target: CallStatus) -> list[CallStatus]:
    """The statuses a call may be in to move to `target` (for conditional UPDATEs)."""
    return [s for s, targets in TRANSITIONS.items() if target in targets]
