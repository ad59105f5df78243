"""Where renewed tokens go: the account's row, or Redis while the database will not take them.

Many token endpoints rotate the refresh token: once they answer, the one in the database no
longer works. If the database then failed to store the answer and the answer were dropped,
the account would be left with a dead refresh token; its next refresh would mark it
`needs_reauth`, and the end user would have to connect again for an outage of ours. So a
refresh's tokens the database refuses are parked at once: encrypted for their account as in
the database, beside the ciphertext they replace. The store is then tried again while the
account's lock is kept; once it succeeds, the parked entry goes. The next refresh of the
account, under the same lock, looks for parked tokens before it asks the token endpoint
anything, and stores them if the account still holds what they replace (compared as
plaintext: `passthru rotate-keys` re-encrypts rows, not the credentials in them). If the
account's credentials changed meanwhile (the tenant stored new ones), the parked ones are
stale and dropped.

A parked entry outlives a Redis restart only if Redis keeps its data; it lasts PARKED_TTL_S.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from sqlalchemy import Engine, update
from sqlalchemy.exc import SQLAlchemyError

from models.accounts.credentials import Credentials
from models.crypto.secrets import Vault
from models.db.tables import ConnectedAccount
from models.errors import CredentialsError
from models.keys import PREFIX
from models.oauth.token_exchange import RefreshUnavailable
from worker.calls.token_lock import KeepLock

log = logging.getLogger("passthru.oauth")

# Long enough for any database outage an operator would sit through; a refresh token
# unused for this long has often expired at the vendor anyway.
PARKED_TTL_S = 7 * 24 * 3600

_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]


def parked_key(account_id: str) -> str:
    return f"{PREFIX}:oauth-parked:{account_id}"


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

    def store_or_park(
        self, account_id: str, creds: Credentials, replacing: str, keep: KeepLock
    ) -> bool:
        """`store`; when the database fails, parked in Redis at once, then stored again
        after each of `retries_s` while `keep` still holds the account's lock. True if
        stored or parked: the tokens can be sent. Raises RefreshUnavailable when neither
        the database nor Redis took them."""
        enc = self._encrypt(account_id, creds)
        try:
            return self._write(account_id, enc, replacing)
        except SQLAlchemyError as exc:
            failure = type(exc).__name__
        parked = self._park(account_id, enc, replacing)
        for pause_s in self.retries_s:
            self.sleep(pause_s)
            if not keep():  # another worker may hold the account now: the entry is its
                break
            try:
                stored = self._write(account_id, enc, replacing)
            except SQLAlchemyError:
                continue
            with suppress(redis.RedisError):
                self.redis.delete(parked_key(account_id))
            return stored
        if parked:
            log.warning("account %s: refreshed tokens parked (database: %s)", account_id, failure)
            return True
        log.error("account %s: refreshed tokens neither stored nor parked: lost", account_id)
        raise RefreshUnavailable(f"the database did not take the refreshed tokens ({failure})")

    def unpark(self, account_id: str, stored: str) -> bool:
        """Store the tokens parked to replace `stored` (the account's ciphertext now), if
        any; drop any parked entry, stale, stored or unreadable. True if there was one: the
        account's row is then to be read again. A database failure leaves it parked."""
        try:
            raw = self.redis.get(parked_key(account_id))
        except redis.RedisError as exc:
            # Refreshing without knowing would spend a refresh token that may be rotated.
            raise RefreshUnavailable(f"parked tokens unreadable ({type(exc).__name__})") from None
        if raw is None:
            return False
        parked = self._replacing(account_id, raw, stored)
        if parked is not None:
            enc = self.vault.encrypt(parked, bound_to=account_id)  # under today's key
            if self._write(account_id, enc, stored):
                log.warning("account %s: parked tokens stored", account_id)
        # One left behind is stale once the row changed: the next look drops it.
        with suppress(redis.RedisError):
            self.redis.delete(parked_key(account_id))
        return True

    def _replacing(self, account_id: str, raw: bytes | str, stored: str) -> dict[str, Any] | None:
        """The parked credentials of entry `raw`, if they replace those `stored` holds."""
        try:
            entry = orjson.loads(raw)
            parked = self._open(account_id, entry["ciphertext"])
            replaced = self._open(account_id, entry["replacing"])
            current = self._open(account_id, stored)
        except (ValueError, KeyError, TypeError, CredentialsError) as exc:
            why = type(exc).__name__
            log.error("account %s: parked tokens unreadable (%s): dropped", account_id, why)
            return None
        return parked if _same(replaced, current) else None

    def _park(self, account_id: str, enc: str, replacing: str) -> bool:
        entry = orjson.dumps({"replacing": replacing, "ciphertext": enc})
        try:
            self.redis.set(parked_key(account_id), entry, ex=PARKED_TTL_S)
        except redis.RedisError:
            return False
        return True

    def _open(self, account_id: str, ciphertext: object) -> dict[str, Any]:
        if not isinstance(ciphertext, str):
            raise TypeError("not a ciphertext")
        return self.vault.decrypt(ciphertext, bound_to=account_id)

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


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two credentials are the same, compared as canonical JSON in constant time."""
    return hmac.compare_digest(
        orjson.dumps(a, option=orjson.OPT_SORT_KEYS), orjson.dumps(b, option=orjson.OPT_SORT_KEYS)
    )
