"""The OAuth2 authorization-code dance of a connect session: the redirect to the vendor
(a random single-use `state` bound to the session and to the browser, PKCE S256 where the
app supports it) and the callback (state checked, the code exchanged with its verifier at
the app's token URL, the tokens stored encrypted). Nothing a token endpoint answers is
logged, shown or stored in clear: failures are described in passthru's own words."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import httpx
from sqlalchemy import Engine
from sqlmodel import Session

from api.connect.sessions import LinkRefused, digest, session_by_state, spend
from models.catalog.apps import App
from models.crypto.secrets import Vault
from models.db.tables import ConnectSession
from models.errors import CredentialsError
from models.net.overrides import apply_override
from models.oauth.token_exchange import RefreshUnavailable, error_code, exchange_code

log = logging.getLogger("passthru.connect")
CALLBACK_PATH = "/oauth/callback"
# A PKCE verifier: 64 random bytes, 86 characters of base64url (RFC 7636 allows 43 to 128).
VERIFIER_BYTES = 64
MAX_PARAM_CHARS = 4096  # the longest code or state read from the callback


@dataclass(frozen=True)
class Outcome:
    """Where the browser goes after the callback: the tenant's redirect_url with `params`."""

    session: ConnectSession
    params: dict[str, str]
    credentials: dict[str, object] | None = None


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def authorize_url(
    app: App,
    session: ConnectSession,
    *,
    state: str,
    verifier: str | None,
    public_origin: str,
    overrides: dict[str, str],
) -> str:
    """The vendor's authorization URL for this session (after the operator's overrides)."""
    assert app.oauth2 is not None
    assert app.oauth2.client_id is not None
    base = app.authorize_url_for(session.connection_config)
    assert base is not None
    scopes = session.scopes if session.scopes is not None else app.oauth2.scopes
    separator = " " if app.oauth2.scope_separator == "+" else app.oauth2.scope_separator
    params = {
        **app.oauth2.authorize_params,
        "response_type": "code",
        "client_id": app.oauth2.client_id,
        "redirect_uri": public_origin + CALLBACK_PATH,
        "state": state,
    }
    if scopes:
        params["scope"] = separator.join(scopes)
    if verifier is not None:
        params["code_challenge"] = challenge_of(verifier)
        params["code_challenge_method"] = "S256"
    url, _ = apply_override(base, overrides)
    return url + ("&" if "?" in url else "?") + urlencode(params)


def begin(
    engine: Engine, vault: Vault, app: App, session: ConnectSession, browser: str, now: datetime
) -> tuple[str, str | None]:
    """A new state (and verifier) for the session, replacing any earlier one: only the last
    Connect pressed can finish. Returns (state, verifier)."""
    assert app.oauth2 is not None
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(VERIFIER_BYTES) if app.oauth2.pkce else None
    values = {
        "state_hash": digest(state),
        "browser_hash": digest(browser),
        "verifier_enc": vault.encrypt({"verifier": verifier}, bound_to=session.id),
    }
    with Session(engine) as db:
        fresh = db.get(ConnectSession, session.id)
        if fresh is None or fresh.used_at is not None or fresh.expires_at <= now:
            raise LinkRefused("Link already used", "This connect link was used already.")
        for name, value in values.items():
            setattr(fresh, name, value)
        db.add(fresh)
        db.commit()
    return state, verifier


def finish(
    engine: Engine,
    vault: Vault,
    app_of: dict[str, App],
    http: httpx.Client,
    *,
    query: dict[str, str],
    browser: str | None,
    public_origin: str,
    overrides: dict[str, str],
    now: datetime,
) -> Outcome:
    """The callback: the state's session spent (once), then the vendor's denial, a failed
    exchange, or the tokens. Raises LinkRefused for a state that cannot be used."""
    state = query.get("state", "")
    if not state or len(state) > MAX_PARAM_CHARS:
        raise LinkRefused("Unknown sign-in", "The vendor sent no usable state.")
    session = session_by_state(engine, state, now)
    if browser is None or digest(browser) != session.browser_hash:
        raise LinkRefused(
            "Another browser", "Finish connecting in the browser where you pressed Connect."
        )
    with Session(engine) as db:
        spend(db, session, now)
        db.commit()
    app = app_of.get(session.app)
    if "error" in query or app is None or app.oauth2 is None:
        code = error_code(query.get("error"), "authorization_failed")
        why = "the user denied access" if code == "access_denied" else "the vendor refused"
        return Outcome(session, {"error": code, "error_description": why})
    code_value = query.get("code", "")
    if not code_value or len(code_value) > MAX_PARAM_CHARS:
        return Outcome(session, _failed("the vendor sent no code"))
    try:
        verifier = vault.decrypt(session.verifier_enc or "", bound_to=session.id).get("verifier")
    except CredentialsError:  # the encryption key was replaced since Connect was pressed
        return Outcome(session, _failed("the sign-in can no longer be read; start again"))
    try:
        token_url, _ = apply_override(app.token_url_for(session.connection_config), overrides)
        creds = exchange_code(
            http,
            app.oauth2,
            token_url,
            code=code_value,
            redirect_uri=public_origin + CALLBACK_PATH,
            verifier=verifier if isinstance(verifier, str) else None,
            now_s=now.timestamp(),
        )
    except (RefreshUnavailable, ValueError) as exc:
        log.warning("connect session %s: the code exchange failed: %s", session.id, exc)
        return Outcome(session, _failed(str(exc)))
    return Outcome(session, {}, creds.model_dump(exclude_none=True))


def _failed(why: str) -> dict[str, str]:
    return {"error": "token_exchange_failed", "error_description": why}
