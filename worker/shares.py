"""How much of a process's room one tenant may hold: the interactive lane's threads
(worker/lane.py), the sender's connections (worker/net/sender.py)."""

from __future__ import annotations


def tenant_share(room: int) -> int:
    """All of `room` but a quarter (at least one) kept for other tenants, and at least one."""
    return max(1, room - max(1, room // 4))
