"""OAuth2 access tokens kept fresh: refreshed at the app's token URL before they expire (or
after a 401), once per account however many calls need it at the same moment.

Every worker that finds a token about to expire takes the account's Redis lock; the first
refreshes and stores the new tokens encrypted; the others, once they hold the lock, read
the account again and find them. An `invalid_grant` answer means the user revoked access:
the account becomes `needs_reauth` and its waiting calls end `failed` with
`credentials_revoked`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import redis
from sqlalchemy import Engine, select, update

from models.accounts.credentials import OAuth2Credentials, load_credentials, usable_token
from models.accounts.states import ACCOUNTS, AccountStatus
from models.calls.states import CALLS, WAITING, CallStatus
from models.catalog.apps import App
from models.crypto.secrets import Vault
from models.db.tables import ConnectedAccount, FunctionCall
from models.keys import PREFIX
from models.net.overrides import apply_override
from models.oauth.token_exchange import (
    RefreshUnavailable,
    Revoked,
    client_auth,
    client_form,
    expires_at_of,
    post_form,
)
from models.webhooks.outbox import enqueue_deliveries
from worker.calls.scrub import Scrubber

log = logging.getLogger("passthru.oauth")
# The longest piece of a token endpoint's answer kept in a message.
ANSWER_CHARS = 200

LOCK_TTL_S = 30.0  # a refresher that died frees the lock after this
LOCK_WAIT_S = 20.0  # how long a call waits for another worker's refresh
# A token refreshed this recently is not refreshed again after a 401: the 401 is the answer.
FRESH_AFTER_401_S = 60.0

_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]
_calls = FunctionCall.__table__  # type: ignore[attr-defined]


def expiring(creds: OAuth2Credentials, now_s: float, margin_s: float) -> bool:
    return creds.expires_at is not None and creds.expires_at - margin_s <= now_s


@dataclass
class Refresher:
    engine: Engine
    vault: Vault
    redis: redis.Redis
    http: httpx.Client  # sync: refreshes happen on the worker's pipeline threads
    margin_s: float
    overrides: dict[str, str]
    # account ids -> call ids it failed; the pipeline announces them as finished
    on_revoked: Callable[[Sequence[str]], None] = lambda _: None
    clock: Callable[[], float] = time.time

    def ensure_fresh(
        self,
        app: App,
        account_id: str,
        seen: OAuth2Credentials,
        *,
        config: dict[str, Any] | None = None,
        after_401: bool = False,
    ) -> OAuth2Credentials:
        """Credentials to send with: `seen` if still good, else freshly refreshed ones.
        `config` is the account's connection_config (templated token URLs)."""
        if app.oauth2 is None or not seen.refresh_token:
            return seen
        if not after_401 and not expiring(seen, self.clock(), self.margin_s):
            return seen
        lock = self.redis.lock(f"{PREFIX}:oauth-lock:{account_id}", timeout=LOCK_TTL_S)
        try:
            got = lock.acquire(blocking_timeout=LOCK_WAIT_S)
        except redis.RedisError as exc:
            raise RefreshUnavailable(
                f"the refresh lock is unavailable ({type(exc).__name__})"
            ) from None
        if not got:
            raise RefreshUnavailable("another worker is still refreshing this account's token")
        try:
            current, enc = self._load(account_id)
            if current.access_token != seen.access_token and not expiring(
                current, self.clock(), self.margin_s
            ):
                return current  # refreshed by another worker meanwhile
            if after_401 and (current.refreshed_at or 0) > self.clock() - FRESH_AFTER_401_S:
                return current  # just refreshed: the 401 stands
            if not current.refresh_token:
                return current
            try:
                fresh = self._refresh(app, current, config)
            except Revoked:
                if self._revoke(account_id, enc):
                    raise
                # New credentials came meanwhile (or it was revoked: _load raises Revoked).
                return self._load(account_id)[0]
            if not self._store(account_id, fresh, enc):
                # The tenant stored new credentials while this refresh ran: they win.
                return self._load(account_id)[0]
            log.info("account %s: access token refreshed", account_id)
            return fresh
        finally:
            # A lock that expired while refreshing, or a Redis gone meanwhile, has nothing
            # to release: the lock's TTL frees it.
            with contextlib.suppress(redis.RedisError):
                lock.release()

    def _load(self, account_id: str) -> tuple[OAuth2Credentials, str]:
        """The account's credentials, and their ciphertext (to replace only if unchanged)."""
        with self.engine.connect() as conn:
            status, enc = conn.execute(
                select(_accounts.c.status, _accounts.c.credentials_enc).where(
                    _accounts.c.id == account_id
                )
            ).one()
        if status == AccountStatus.NEEDS_REAUTH:  # revoked while this call waited for the lock
            raise Revoked("the account needs to be connected again")
        creds = load_credentials(self.vault.decrypt(enc, bound_to=account_id))
        if not isinstance(creds, OAuth2Credentials):
            raise Revoked("the account no longer holds OAuth2 credentials")
        return creds, str(enc)

    def _refresh(
        self, app: App, current: OAuth2Credentials, config: dict[str, Any] | None
    ) -> OAuth2Credentials:
        assert app.oauth2 is not None
        assert current.refresh_token is not None
        client_secret = app.oauth2.client_secret
        scrub = Scrubber(
            [
                current.access_token,
                current.refresh_token,
                client_secret.get_secret_value() if client_secret else None,
            ]
        )
        form: dict[str, Any] = {
            "grant_type": "refresh_token",
            "refresh_token": current.refresh_token,
        }
        client = client_auth(app.oauth2)
        if client is None:
            form.update(client_form(app.oauth2))
        try:
            url, _ = apply_override(app.token_url_for(config), self.overrides)
        except ValueError as exc:
            raise RefreshUnavailable(f"no token URL for this account: {exc}") from None
        status, body = post_form(self.http, url, form, auth=client)
        if status in (400, 401) and body.get("error") == "invalid_grant":
            why = str(body.get("error_description") or "invalid_grant")
            raise Revoked(scrub.stored(why, ANSWER_CHARS))
        access_token, refresh_token = body.get("access_token"), body.get("refresh_token")
        if status != 200 or not usable_token(access_token):
            why = str(body.get("error") or "without a usable access_token")
            raise RefreshUnavailable(
                f"token endpoint answered {status} {scrub.stored(why, ANSWER_CHARS)}"
            )
        now = self.clock()
        # Built, not validated: the new token was checked above, and the refresh token kept
        # may have been stored under older rules (a validation error would quote it).
        return OAuth2Credentials.model_construct(
            access_token=access_token,
            refresh_token=refresh_token if usable_token(refresh_token) else current.refresh_token,
            expires_at=expires_at_of(body.get("expires_in"), now),
            refreshed_at=now,
        )

    def _store(self, account_id: str, creds: OAuth2Credentials, replacing: str) -> bool:
        """Store refreshed tokens unless the account's credentials changed since `replacing`
        was read (the tenant stored new ones meanwhile); True if stored."""
        enc = self.vault.encrypt(creds.model_dump(exclude_none=True), bound_to=account_id)
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    update(_accounts)
                    .where(_accounts.c.id == account_id, _accounts.c.credentials_enc == replacing)
                    .values(credentials_enc=enc)
                ).rowcount
                == 1
            )

    def _revoke(self, account_id: str, revoked: str) -> bool:
        """The account needs its user again and its waiting calls cannot run; unless its
        credentials changed since `revoked` was read (new ones are not revoked), or it is
        `needs_reauth` already (ACCOUNTS has no such move). True if it was revoked."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        with self.engine.begin() as conn:
            marked = conn.execute(
                ACCOUNTS.update(
                    _accounts,
                    AccountStatus.NEEDS_REAUTH,
                    _accounts.c.id == account_id,
                    _accounts.c.credentials_enc == revoked,
                )
            ).rowcount
            if not marked:
                return False
            failed = [
                row[0]
                for row in conn.execute(
                    CALLS.update(
                        _calls,
                        CallStatus.FAILED,
                        _calls.c.connected_account_id == account_id,
                        current=WAITING,
                    )
                    .values(
                        error="credentials_revoked",
                        error_message="the account's refresh token was revoked; update the "
                        "account with PATCH /connected-accounts/{id}",
                        finished_at=now,
                        next_attempt_at=None,
                    )
                    .returning(_calls.c.id)
                )
            ]
            enqueue_deliveries(conn, failed, now, published=False)  # the sweeper sends them
        log.warning(
            "account %s: refresh token revoked; needs_reauth, %d waiting calls failed",
            account_id,
            len(failed),
        )
        if failed:
            self.on_revoked(failed)
        return True
