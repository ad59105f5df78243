"""OAuth2 access tokens kept fresh: refreshed at the app's token URL before they expire (or
after a 401), once per account however many calls need it at the same moment; for an app of
the client credentials grant, fetched the same way with the account's own client.

Every worker that finds a token about to expire takes the account's Redis lock; the first
refreshes and stores the new tokens encrypted; the others, once they hold the lock, read
the account again and find them. An `invalid_grant` answer means the user revoked access
(a refused client, for the client credentials grant: the client was revoked or is wrong):
the account becomes `needs_reauth` and its waiting calls end `failed` with
`credentials_revoked`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import redis
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from models.accounts.credentials import (
    ClientToken,
    OAuth2Credentials,
    load_credentials,
    usable_token,
)
from models.accounts.states import AccountStatus
from models.catalog.apps import App
from models.crypto.secrets import Vault
from models.db.engine import read_connection
from models.db.tables import ConnectedAccount
from models.errors import CredentialsError
from models.net.overrides import apply_override
from models.oauth.token_exchange import (
    ClientRefused,
    RefreshUnavailable,
    Revoked,
    client_auth,
    client_form,
    expires_at_of,
    expiring,
    post_form,
    token_error,
)
from worker.calls.client_token import fetch_client_token
from worker.calls.reauth import needs_reauth
from worker.calls.token_lock import account_lock
from worker.calls.token_store import TokenStore

log = logging.getLogger("passthru.oauth")

# A token refreshed this recently is not refreshed again after a 401: the 401 is the answer.
FRESH_AFTER_401_S = 60.0
REVOKED = "the account's refresh token was revoked"
REFUSED = "the token endpoint refused the account's client id and secret"

_accounts = ConnectedAccount.__table__  # type: ignore[attr-defined]
_Creds = TypeVar("_Creds", OAuth2Credentials, ClientToken)


@contextmanager
def _database_answers() -> Iterator[None]:
    """A database that fails while a token is renewed makes the renewal unavailable (the
    call is tried again later), not the call's request one that cannot be built."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise RefreshUnavailable(
            f"the database did not answer while the token was renewed ({type(exc).__name__})"
        ) from None


def _still_good(current: ClientToken, seen: ClientToken, after_401: bool, now_s: float) -> bool:
    """Whether `current` (read under the lock) is the token to send, without a new one:
    one fetched by another worker meanwhile, or, after a 401, one fetched for a 401 just
    now (that 401 stands)."""
    if not current.access_token:
        return False
    if after_401 and current.access_token == seen.access_token:
        return current.after_401 and (current.refreshed_at or 0) > now_s - FRESH_AFTER_401_S
    return True


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
    sleep: Callable[[float], None] = time.sleep  # between tries of a failing store

    @property
    def _tokens(self) -> TokenStore:
        return TokenStore(self.engine, self.vault, self.redis, self.sleep)

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
        if not after_401 and not expiring(seen.expires_at, self.clock(), self.margin_s):
            return seen
        with account_lock(self.redis, account_id) as keep, _database_answers():
            current, enc = self._load(account_id, OAuth2Credentials)
            if self._tokens.unpark(account_id, enc):  # a refresh the database refused
                current, enc = self._load(account_id, OAuth2Credentials)
            if current.access_token != seen.access_token and not expiring(
                current.expires_at, self.clock(), self.margin_s
            ):
                return current  # refreshed by another worker meanwhile
            if after_401 and (current.refreshed_at or 0) > self.clock() - FRESH_AFTER_401_S:
                return current  # just refreshed: the 401 stands
            if not current.refresh_token:
                return current
            try:
                fresh = self._refresh(app, current, config)
            except Revoked:
                if self._revoke(account_id, enc, REVOKED):
                    raise
                # New credentials came meanwhile (or it was revoked: _load raises Revoked).
                return self._load(account_id, OAuth2Credentials)[0]
            if not self._tokens.store_or_park(account_id, fresh, enc, keep):
                # The tenant stored new credentials while this refresh ran: they win.
                return self._load(account_id, OAuth2Credentials)[0]
            log.info("account %s: access token refreshed", account_id)
            return fresh

    def ensure_token(
        self,
        app: App,
        account_id: str,
        seen: ClientToken,
        *,
        config: dict[str, Any] | None = None,
        after_401: bool = False,
    ) -> ClientToken:
        """For an app of the client credentials grant: `seen` if its access token is still
        good, else the account's client with a token just fetched and stored."""
        if app.oauth2 is None or not app.oauth2.client_credentials:
            raise CredentialsError("the app no longer takes client credentials")
        fine = not expiring(seen.expires_at, self.clock(), self.margin_s)
        if seen.access_token and fine and not after_401:
            return seen
        with account_lock(self.redis, account_id), _database_answers():
            current, enc = self._load(account_id, ClientToken)
            now = self.clock()
            if _still_good(current, seen, after_401, now) and not expiring(
                current.expires_at, now, self.margin_s
            ):
                return current
            try:
                fresh = fetch_client_token(
                    self.http, app, current, config, self.overrides, now_s=now
                )
            except ClientRefused:
                if self._revoke(account_id, enc, REFUSED):
                    raise
                return self._fetched_meanwhile(account_id)
            fresh = fresh.model_copy(update={"after_401": after_401})
            if not self._tokens.store(account_id, fresh, enc):
                return self._fetched_meanwhile(account_id)
            log.info("account %s: access token fetched with its own client", account_id)
            return fresh

    def _fetched_meanwhile(self, account_id: str) -> ClientToken:
        """The account's client and token as another writer just left them (the tenant's
        new client has no token yet: the call tries again)."""
        current = self._load(account_id, ClientToken)[0]
        if not current.access_token:
            raise RefreshUnavailable("the account's client changed while a token was fetched")
        return current

    def _load(self, account_id: str, kind: type[_Creds]) -> tuple[_Creds, str]:
        """The account's credentials, and their ciphertext (to replace only if unchanged)."""
        with read_connection(self.engine) as conn:
            status, enc = conn.execute(
                select(_accounts.c.status, _accounts.c.credentials_enc).where(
                    _accounts.c.id == account_id
                )
            ).one()
        if status == AccountStatus.NEEDS_REAUTH:  # revoked while this call waited for the lock
            refused = ClientRefused if kind is ClientToken else Revoked
            raise refused("the account needs to be connected again")
        creds = load_credentials(self.vault.decrypt(enc, bound_to=account_id))
        if not isinstance(creds, kind):
            raise Revoked("the account no longer holds OAuth2 credentials")
        return creds, str(enc)

    def _refresh(
        self, app: App, current: OAuth2Credentials, config: dict[str, Any] | None
    ) -> OAuth2Credentials:
        assert app.oauth2 is not None
        assert current.refresh_token is not None
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
        # Only a standard error code is repeated: a description may echo what was sent
        # (the client secret, base64 in a Basic header or quoted in the form).
        if status in (400, 401) and body.get("error") == "invalid_grant":
            raise Revoked("the token endpoint refused the refresh token (invalid_grant)")
        access_token, refresh_token = body.get("access_token"), body.get("refresh_token")
        if status != 200 or not usable_token(access_token):
            why = token_error(body) or "without a usable access_token"
            raise RefreshUnavailable(f"token endpoint answered {status} {why}")
        now = self.clock()
        # Built, not validated: the new token was checked above, and the refresh token kept
        # may have been stored under older rules (a validation error would quote it).
        return OAuth2Credentials.model_construct(
            access_token=access_token,
            refresh_token=refresh_token if usable_token(refresh_token) else current.refresh_token,
            expires_at=expires_at_of(body.get("expires_in"), now),
            refreshed_at=now,
        )

    def _revoke(self, account_id: str, revoked: str, why: str) -> bool:
        """needs_reauth (see worker/calls/reauth.py); its failed calls announced."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        failed = needs_reauth(self.engine, account_id, revoked, why, now)
        if failed:
            self.on_revoked(failed)
        return failed is not None
