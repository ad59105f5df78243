"""Where renewed tokens go: the account's row, or Redis while the database will not take them.

Many token endpoints rotate the refresh token: once they answer, the one in the database no
longer works. If the database then failed to store the answer and the answer were dropped,
the account would be left with a dead refresh token; its next refresh would mark it
`needs_reauth`, and the end user would have to connect again for an outage of ours. So a
refresh's tokens the database refuses, after a few tries, are parked: encrypted for their
account as in the database, beside the hash of the ciphertext they replace. The next
refresh of that account, under the same lock, stores them before it asks the token endpoint
anything. If the account's credentials changed meanwhile (the tenant stored new ones), the
parked ones are stale and dropped.

A parked entry outlives a Redis restart only if Redis keeps its data; it lasts PARKED_TTL_S.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import orjson
import redis
from sqlalchemy import Engine, update
from sqlalchemy.exc import SQLAlchemyError

from models.accounts.credentials import Credentials
from models.crypto.secrets import Vault
from models.db.tables import ConnectedAccount
from models.keys import PREFIX
from models.oauth.token_exchange import RefreshUnavailable

log = logging.getLogger("passthru.oauth")

# Long enough for any database outage an operator would sit through; a refresh token
# unused for this long has often expired at the vendor anyway.
PARKED_TTL_S = 7 * 24 * 3600

_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]


def parked_key(account_id: str) -> str:
    return f"{PREFIX}:oauth-parked:{account_id}"


def _digest(ciphertext: str) -> str:
    return hashlib.sha256(ciphertext.encode()).hexdigest()


@dataclass(frozen=True)
class TokenStore:
    engine: Engine
    vault: Vault
    redis: redis.Redis
    sleep: Callable[[float], None] = time.sleep
    # Pauses before trying the database again when it fails to take a refresh's tokens.
    retries_s: tuple[float, ...] = (0.2, 1.0)

    def store(self, account_id: str, creds: Credentials, replacing: str) -> bool:
        """Store new tokens unless the account's credentials changed since `replacing` was
        read (the tenant stored new ones meanwhile); True if stored."""
        return self._write(account_id, self._encrypt(account_id, creds), replacing)

    def store_or_park(self, account_id: str, creds: Credentials, replacing: str) -> bool:
        """`store`, tried again while the database fails, then parked in Redis. True if
        stored or parked: the tokens can be sent. Raises RefreshUnavailable when neither
        the database nor Redis took them."""
        enc = self._encrypt(account_id, creds)
        failure = ""
        for pause_s in (*self.retries_s, None):
            try:
                return self._write(account_id, enc, replacing)
            except SQLAlchemyError as exc:
                failure = type(exc).__name__
            if pause_s is not None:
                self.sleep(pause_s)
        entry = orjson.dumps({"replacing": _digest(replacing), "ciphertext": enc})
        try:
            self.redis.set(parked_key(account_id), entry, ex=PARKED_TTL_S)
        except redis.RedisError:
            log.error("account %s: refreshed tokens neither stored nor parked: lost", account_id)
            raise RefreshUnavailable(
                f"the database did not take the refreshed tokens ({failure})"
            ) from None
        log.warning("account %s: refreshed tokens parked (database: %s)", account_id, failure)
        return True

    def unpark(self, account_id: str, stored: str) -> bool:
        """Store the tokens parked to replace `stored` (the account's ciphertext now), if
        any; drop any parked entry, stale or stored. True if there was one: the account's
        row is then to be read again. A database failure leaves the entry parked."""
        try:
            raw = self.redis.get(parked_key(account_id))
        except redis.RedisError as exc:
            # Refreshing without knowing would spend a refresh token that may be rotated.
            raise RefreshUnavailable(f"parked tokens unreadable ({type(exc).__name__})") from None
        if raw is None:
            return False
        entry = orjson.loads(raw)
        current = entry.get("replacing") == _digest(stored)
        if current and self._write(account_id, str(entry["ciphertext"]), stored):
            log.warning("account %s: parked tokens stored", account_id)
        # One left behind is stale once the row changed: the next look drops it.
        with suppress(redis.RedisError):
            self.redis.delete(parked_key(account_id))
        return True

    def _encrypt(self, account_id: str, creds: Credentials) -> str:
        return self.vault.encrypt(creds.model_dump(exclude_none=True), bound_to=account_id)

    def _write(self, account_id: str, enc: str, replacing: str) -> bool:
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    update(_accounts)
                    .where(_accounts.c.id == account_id, _accounts.c.credentials_enc == replacing)
                    .values(credentials_enc=enc)
                ).rowcount
                == 1
            )
