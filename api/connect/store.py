"""What a finished connect session leaves: the account stored (new, or the one it
reconnects, with new credentials that clear `needs_reauth`), its `connection.created` event
published, and the URL the end user's browser is sent back to."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from sqlalchemy import Engine
from sqlmodel import Session

from api.account_cap import AccountCap
from api.account_store import create_account, update_account
from models.broker import Publisher
from models.catalog.apps import Catalog
from models.crypto.secrets import Vault
from models.db.tables import ConnectSession, Tenant
from models.errors import ApiError
from models.webhooks.due import one_tenant
from models.webhooks.publish import publish_deliveries_or_forget

log = logging.getLogger("passthru.connect")
SOURCE = "connect_page"


def store_account(
    engine: Engine,
    catalog: Catalog,
    vault: Vault,
    publisher: Publisher,
    session: ConnectSession,
    *,
    credentials: dict[str, Any],
    config: dict[str, Any] | None,
    cap: AccountCap | None = None,
) -> dict[str, str]:
    """Store the account; the query the tenant's redirect_url gets (`connected_account_id`
    and `app`, or `error` and `error_description` when it cannot be stored)."""
    with Session(engine) as db:
        tenant = db.get(Tenant, session.tenant_id)
    if tenant is None:
        return {"error": "account_not_stored", "error_description": "the tenant is gone"}
    try:
        if session.account_id is not None:
            account = update_account(
                engine,
                tenant,
                catalog,
                vault,
                session.account_id,
                credentials=credentials,
                config=config,
            )
            events: list[str] = []
        else:
            account, _, events = create_account(
                engine,
                tenant,
                catalog,
                vault,
                app_slug=session.app,
                user_id=session.user_id,
                credentials=credentials,
                config=config,
                source=SOURCE,
                cap=cap,
            )
    except ApiError as exc:
        # The message names a field and what is wrong with it, never a submitted value.
        log.warning("connect session %s: account not stored: %s", session.id, exc.error)
        return {"error": "account_not_stored", "error_description": exc.error}
    if events:
        publish_deliveries_or_forget(
            engine, publisher, events, one_tenant(events, account.tenant_id)
        )
    log.info("connect session %s: account %s connected", session.id, account.id)
    return {"connected_account_id": account.id, "app": session.app}


def back_to_tenant(session: ConnectSession, params: dict[str, str]) -> str:
    """The session's redirect_url with `params` added to its query."""
    parts = urlsplit(session.redirect_url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    # As it travels: an international host in its ASCII (IDNA) form, for the Location header.
    return str(httpx.URL(urlunsplit(parts._replace(query=urlencode(query)))))
