"""The connected-account state machine: `ACCOUNTS` checks every status change, and builds the
guard of every status UPDATE (models/machine.py).

  active ──> needs_reauth   the refresh token was revoked (worker/calls/oauth.py), whatever the
  disabled ─┘               tenant's switch says: the credentials are what is wrong
  needs_reauth ──> active   new credentials (PATCH with `credentials`, never `status` alone)
  active <──> disabled      PATCH `status` (a needs_reauth account may be disabled too)

Only an active account's calls run; new calls name an active account or are refused.
"""

from __future__ import annotations

from enum import StrEnum

from models.machine import StateMachine


class AccountStatus(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    DISABLED = "disabled"


ACCOUNTS = StateMachine(
    "connected account",
    {
        AccountStatus.ACTIVE: {AccountStatus.NEEDS_REAUTH, AccountStatus.DISABLED},
        AccountStatus.NEEDS_REAUTH: {AccountStatus.ACTIVE, AccountStatus.DISABLED},
        AccountStatus.DISABLED: {AccountStatus.ACTIVE, AccountStatus.NEEDS_REAUTH},
    },
)
