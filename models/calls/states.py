"""The call state machine: `CALLS` checks every status change, and builds the guard of every
status UPDATE (models/machine.py).

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

from models.machine import StateMachine


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


CALLS = StateMachine(
    "call",
    {
        CallStatus.QUEUED: {CallStatus.RUNNING, CallStatus.CANCELLED, CallStatus.FAILED},
        CallStatus.RUNNING: {
            CallStatus.COMPLETED,
            CallStatus.FAILED,
            CallStatus.RETRYING,
            CallStatus.QUEUED,
        },
        CallStatus.RETRYING: {CallStatus.RUNNING, CallStatus.CANCELLED, CallStatus.FAILED},
        CallStatus.COMPLETED: set(),
        CallStatus.FAILED: set(),
        CallStatus.CANCELLED: set(),
    },
)

FINAL = CALLS.final
# Calls that will run and are not running: waiting for a worker, or for their time.
WAITING = (CallStatus.QUEUED, CallStatus.RETRYING)
