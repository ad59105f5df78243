"""Connect sessions: a single-use link (`POST /connect-sessions`) for one end user to connect
one app, made with everything checked as `POST /connected-accounts` checks it; its token is
32 random bytes, stored only as its SHA-256."""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from api.account_store import check_config, get_account, known_app
from api.quotas import too_many
from api.schemas.connect import ConnectSessionIn
from models.catalog.apps import App, Catalog
from models.catalog.templates import render_values
from models.db.engine import session_scope
from models.db.ids import new_id
from models.db.tables import ConnectSession, Tenant
from models.errors import ApiError, ErrorDetail, invalid
from models.net.urls import MAX_CALLBACK_URL_CHARS, parse_http_url

# Unused, unexpired links a tenant may hold at once.
MAX_OPEN_LINKS = 1_000

TOKEN_BYTES = 32
_SCOPE_CHARS = frozenset(map(chr, range(0x21, 0x7F))) - {'"', "\\"}


def digest(secret: str) -> str:
    """What is stored of a link's token or an OAuth2 state: its SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewSession:
    session: ConnectSession
    url: str


class LinkRefused(Exception):
    """The link or state cannot be used (unknown, used, expired): a page says so."""

    def __init__(self, title: str, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.title, self.message, self.status_code = title, message, status_code


def check_redirect_url(url: str) -> str:
    """https, or http to a loopback address (a tenant's development machine)."""
    try:
        parsed = parse_http_url(url, max_chars=MAX_CALLBACK_URL_CHARS)
    except ValueError as exc:
        raise invalid("redirect_url", str(exc)) from None
    if parsed.fragment:
        raise invalid("redirect_url", "must not have a #fragment")
    if parsed.scheme == "http" and not _loopback(parsed.host):
        raise invalid("redirect_url", "must be https (http only to 127.0.0.1, ::1 or localhost)")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def connect_kind(app: App) -> str:
    """What the hosted page asks for: `oauth2`, `basic` (username and password) or `api_key`."""
    if app.oauth2 is not None:
        return "oauth2"
    return "basic" if app.auth.type == "basic" and not app.auth.api_key_as else "api_key"


def _check_oauth(app: App, scopes: list[str] | None) -> None:
    if app.oauth2 is None:
        if scopes is not None:
            raise invalid("scopes", f"{app.slug} is not an OAuth2 app")
        return
    if app.oauth2.client_credentials:
        raise invalid(
            "app",
            f"{app.slug} uses the OAuth2 client credentials grant: there is no user to "
            "authorize it, so no connect page; create its account with POST "
            "/connected-accounts, giving the client ID and secret",
            "app_not_connectable",
        )
    if app.oauth2.authorize_url is None or not app.oauth2.client_id:
        raise invalid(
            "app",
            f"{app.slug} cannot be connected here: the operator has not set its authorize_url "
            "and OAuth client (PASSTHRU_APPS_FILE, PASSTHRU_OAUTH_CLIENTS)",
            "app_not_connectable",
        )
    for scope in scopes or []:
        if not set(scope) <= _SCOPE_CHARS:
            raise invalid("scopes", "a scope is printable ASCII without spaces, '\"' or '\\'")


def _check_given_config(app: App, config: dict[str, Any] | None) -> None:
    """An OAuth2 app's page asks for nothing, so its config must be whole now; the page of
    an API-key or basic-auth app asks for what is missing, so only what is given is checked."""
    if connect_kind(app) == "oauth2":
        check_config(app, config)
        return
    given = [name for name in app.template_fields if (config or {}).get(name) is not None]
    try:
        render_values(given, config or {}, app.connection_config)
    except ValueError as exc:
        raise invalid("connection_config", str(exc)) from exc


def create_session(
    engine: Engine,
    tenant: Tenant,
    catalog: Catalog,
    body: ConnectSessionIn,
    *,
    header_user: str | None,
    public_origin: str,
    ttl_s: float,
    now: datetime,
) -> NewSession:
    app = known_app(catalog, body.app)
    _check_oauth(app, body.scopes)
    check_redirect_url(body.redirect_url)
    _check_given_config(app, body.connection_config)
    user_id = body.user_id or header_user
    if body.connected_account_id is not None:
        user_id = _reconnected_user(engine, tenant, app, body.connected_account_id, user_id)
    if not user_id:
        raise invalid("user_id", "name the end user in `user_id` or the X-User-ID header")
    _check_open_links(engine, tenant, now)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session = ConnectSession(
        id=new_id("cs"),
        tenant_id=tenant.id,
        app=app.slug,
        user_id=user_id,
        account_id=body.connected_account_id,
        redirect_url=body.redirect_url,
        scopes=body.scopes,
        connection_config=body.connection_config,
        token_hash=digest(token),
        expires_at=now + timedelta(seconds=ttl_s),
        created_at=now,
    )
    with session_scope(engine) as db:
        db.add(session)
    return NewSession(session, f"{public_origin}/connect/{token}")


def _check_open_links(engine: Engine, tenant: Tenant, now: datetime) -> None:
    """A tenant holds at most MAX_OPEN_LINKS links not yet used nor expired (each row is up
    to about 10 KB; expired ones are deleted by the worker's retention run)."""
    open_links = (
        select(ConnectSession.id)
        .where(
            col(ConnectSession.tenant_id) == tenant.id,
            col(ConnectSession.used_at).is_(None),
            col(ConnectSession.expires_at) > now,
        )
        .limit(MAX_OPEN_LINKS)
    )
    with Session(engine) as db:
        held = len(db.exec(open_links).all())
    if held >= MAX_OPEN_LINKS:
        raise too_many(
            "connect_links",
            "connect_sessions",
            f"at most {MAX_OPEN_LINKS} unused connect links at a time; wait for some to be "
            "used or to expire",
            60,
        )


def _reconnected_user(
    engine: Engine, tenant: Tenant, app: App, account_id: str, user_id: str | None
) -> str:
    """The user of the account a session reconnects: it must be this app's, and the user
    named (if any) its own."""
    with Session(engine) as db:
        try:
            account = get_account(db, tenant, account_id)
        except ApiError as exc:
            raise ApiError(
                exc.error, [ErrorDetail("connected_account_id", str(exc))], 404
            ) from None
    if account.app != app.slug:
        raise invalid("connected_account_id", f"account {account_id} is not a {app.slug} account")
    if user_id is not None and user_id != account.user_id:
        raise invalid("user_id", f"account {account_id} belongs to another user")
    return account.user_id


def open_session(engine: Engine, token: str, now: datetime) -> ConnectSession:
    """The session of a link still usable, else LinkRefused."""
    if len(token) > 2 * TOKEN_BYTES:
        raise LinkRefused("Unknown link", "This connect link is not valid.", 404)
    with Session(engine) as db:
        found = db.exec(
            select(ConnectSession).where(col(ConnectSession.token_hash) == digest(token))
        ).first()
    return _usable(found, now, "link")


def _usable(found: ConnectSession | None, now: datetime, what: str) -> ConnectSession:
    if found is None:
        raise LinkRefused(f"Unknown {what}", f"This {what} is not valid.", 404)
    if found.used_at is not None:
        raise LinkRefused(
            "Link already used", "This connect link was used already; ask for a new one."
        )
    if found.expires_at <= now:
        raise LinkRefused("Link expired", "This connect link has expired; ask for a new one.")
    return found


def session_by_state(engine: Engine, state: str, now: datetime) -> ConnectSession:
    with Session(engine) as db:
        found = db.exec(
            select(ConnectSession).where(col(ConnectSession.state_hash) == digest(state))
        ).first()
    if found is None:
        raise LinkRefused(
            "Unknown sign-in", "This sign-in is not one passthru started, or it was replaced."
        )
    return _usable(found, now, "sign-in")


def spend(db: Session, session: ConnectSession, now: datetime, **values: Any) -> None:
    """Mark the session used, once: a second use (a replay, a race) is refused."""
    this = col(ConnectSession.id) == session.id
    stmt = update(ConnectSession).where(this, col(ConnectSession.used_at).is_(None))
    if db.exec(stmt.values(used_at=now, **values)).rowcount != 1:  # type: ignore[call-overload]
        raise LinkRefused("Link already used", "This connect link was used already.")
