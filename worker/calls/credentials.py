"""A call's credentials, in one place: whether its account may be used at all, decrypting
once per account per message, refreshing an OAuth2 token about to expire (or fetching one
with the account's own client, for the client credentials grant), and the 401 path
(refresh, then try again at once)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from models.accounts.credentials import (
    ClientToken,
    Credentials,
    OAuth2Credentials,
    load_credentials,
)
from models.accounts.states import AccountStatus
from models.catalog.apps import App
from models.crypto.secrets import Vault
from models.errors import CredentialsError
from models.oauth.token_exchange import ClientRefused, RefreshUnavailable, Revoked
from worker.calls.claim import AccountRow, Claimed
from worker.calls.outcome import classify
from worker.calls.results import Result, failed
from worker.calls.retry import RetryIn
from worker.calls.scrub import Scrubber
from worker.net.send import Answer, Outcome

REAUTH = "connect the account again with PATCH /connected-accounts/{id}"


class TokenRefresher(Protocol):
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
        Raises Revoked or RefreshUnavailable."""
        ...

    def ensure_token(
        self,
        app: App,
        account_id: str,
        seen: ClientToken,
        *,
        config: dict[str, Any] | None = None,
        after_401: bool = False,
    ) -> ClientToken:
        """The account's client with a token to send: `seen` if still good, else one just
        fetched. Raises ClientRefused or RefreshUnavailable."""
        ...


class NoRefresh:
    """Tokens are sent as stored (tests of other things)."""

    def ensure_fresh(
        self,
        app: App,
        account_id: str,
        seen: OAuth2Credentials,
        *,
        config: dict[str, Any] | None = None,
        after_401: bool = False,
    ) -> OAuth2Credentials:
        return seen

    def ensure_token(
        self,
        app: App,
        account_id: str,
        seen: ClientToken,
        *,
        config: dict[str, Any] | None = None,
        after_401: bool = False,
    ) -> ClientToken:
        return seen


def revoked(exc: Revoked) -> Result:
    if isinstance(exc, ClientRefused):
        why = f"the token endpoint refused the account's client id and secret: {exc}"
        return failed("credentials_revoked", f"{why}; {REAUTH}")
    return failed("credentials_revoked", f"the refresh token was revoked ({exc}); {REAUTH}")


def refusal(account: AccountRow | None) -> Result | None:
    """Why a call cannot use its account, if it cannot."""
    if account is None:
        return failed("account_missing", "the connected account was deleted")
    if account.status == AccountStatus.DISABLED:
        return failed("account_disabled", "the connected account was disabled")
    if account.status == AccountStatus.NEEDS_REAUTH:
        return failed("credentials_revoked", f"the account needs new credentials; {REAUTH}")
    return None


@dataclass
class AccountCredentials:
    """The credentials of the accounts of one message: each decrypted (and refreshed) once."""

    vault: Vault
    refresher: TokenRefresher
    known: dict[str, Credentials | Exception] = field(default_factory=dict)

    def of(self, account: AccountRow, app: App) -> Credentials:
        """The account's credentials, an OAuth2 token refreshed first if it is about to
        expire. Raises CredentialsError, Revoked or RefreshUnavailable."""
        if account.id not in self.known:
            self.known[account.id] = self._open(account, app)
        value = self.known[account.id]
        if isinstance(value, Revoked | RefreshUnavailable):
            raise value
        if isinstance(value, Exception):
            raise CredentialsError(str(value))
        return value

    def _open(self, account: AccountRow, app: App) -> Credentials | Exception:
        try:
            data = self.vault.decrypt(account.credentials_enc, bound_to=account.id)
            creds = load_credentials(data)
            config = account.connection_config
            if isinstance(creds, OAuth2Credentials):
                creds = self.refresher.ensure_fresh(app, account.id, creds, config=config)
            elif isinstance(creds, ClientToken):
                creds = self.refresher.ensure_token(app, account.id, creds, config=config)
            return creds
        except ValidationError as exc:  # its text quotes the values: secrets
            fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
            return CredentialsError(
                f"the stored credentials are not valid ({', '.join(fields)}); {REAUTH}"
            )
        except (CredentialsError, ValueError, Revoked, RefreshUnavailable) as exc:
            return exc

    def retry_after_401(
        self,
        c: Claimed,
        outcome: Outcome,
        app: App | None,
        *,
        max_attempts: int,
        now: datetime,
        scrub: Scrubber,
    ) -> Result | None:
        """A 401 with an OAuth2 token that can be refreshed: refresh it and try again at once
        (a 401 says the request was not acted on). None: the answer goes the usual way."""
        if not (isinstance(outcome, Answer) and outcome.status == 401):
            return None
        used = self.known.get(c.account.id) if c.account else None
        if (
            app is None
            or c.account is None
            or not isinstance(used, OAuth2Credentials | ClientToken)
        ):
            return None
        try:
            fresh = self._renewed(app, c.account, used)
        except Revoked as exc:
            return revoked(exc)
        except RefreshUnavailable:
            return None
        if fresh.access_token == used.access_token or c.attempt >= max_attempts:
            return None
        self.known[c.account.id] = fresh
        return classify(outcome, RetryIn(0.0, "upstream answered 401; token refreshed"), now, scrub)

    def _renewed(
        self, app: App, account: AccountRow, used: OAuth2Credentials | ClientToken
    ) -> OAuth2Credentials | ClientToken:
        """After a 401: a new token for `used`, refreshed or fetched as its kind says."""
        config = account.connection_config
        if isinstance(used, OAuth2Credentials):
            return self.refresher.ensure_fresh(app, account.id, used, config=config, after_401=True)
        return self.refresher.ensure_token(app, account.id, used, config=config, after_401=True)
