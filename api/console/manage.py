"""The console's pages over batches and connected accounts, read and changed with the
API's own queries (`api/bulk_submission.py`, `api/account_pages.py`,
`api/account_store.py`) for the signed-in tenant alone, a page at a time. An account's
credentials are never read for a page."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from api.account_pages import AccountFilter, list_accounts
from api.account_store import update_account
from api.bulk_submission import batch_status, recent_batches
from api.console.forms import field
from api.console.pages import render
from api.console.views import progress
from api.console.visitor import SignedIn
from api.schemas.accounts import AccountOut
from api.schemas.connect import ConnectSessionOut
from models.catalog.apps import Catalog
from models.crypto.secrets import Vault
from models.errors import invalid

# Batches on a page of the batches page, and accounts on a page of the accounts page.
BATCHES_SHOWN = 100
ACCOUNTS_SHOWN = 100
# The statuses the console's buttons may ask for, as PATCH /connected-accounts/{id} allows.
SWITCHABLE = ("active", "disabled")


def batches_page(engine: Engine, who: SignedIn, params: Mapping[str, str]) -> HTMLResponse:
    """A page of BATCHES_SHOWN batches, newest first, from the query string's cursor."""
    cursor = field(params, "cursor")
    batches, next_cursor = recent_batches(engine, who.tenant, BATCHES_SHOWN, cursor)
    return render(
        "batches.html",
        batches=[(b, progress(b.counts, b.accepted)) for b in batches],
        shown=BATCHES_SHOWN,
        first_page=cursor is None,
        next_url=next_url("/console/batches", next_cursor),
        csrf_token=who.csrf_token,
        signed_in=True,
    )


def batch_page(engine: Engine, who: SignedIn, batch_id: str) -> HTMLResponse:
    batch = batch_status(engine, who.tenant, batch_id)
    return render(
        "batch.html",
        batch=batch,
        bar=progress(batch.counts, batch.accepted),
        csrf_token=who.csrf_token,
        signed_in=True,
    )


def accounts_page(
    engine: Engine,
    who: SignedIn,
    params: Mapping[str, str] | None = None,
    link: ConnectSessionOut | None = None,
) -> HTMLResponse:
    """A page of ACCOUNTS_SHOWN of the tenant's accounts, newest first, from the query
    string's cursor, with how each was connected, and a connect link just made."""
    cursor = field(params or {}, "cursor")
    accounts, next_cursor = list_accounts(
        engine, who.tenant, AccountFilter(), cursor, ACCOUNTS_SHOWN
    )
    return render(
        "accounts.html",
        accounts=[AccountOut.of(a) for a in accounts],
        shown=ACCOUNTS_SHOWN,
        first_page=cursor is None,
        next_url=next_url("/console/accounts", next_cursor),
        link=link,
        csrf_token=who.csrf_token,
        signed_in=True,
    )


def next_url(page: str, next_cursor: str | None) -> str | None:
    """The **Next** link of a page read by keyset: the page again, from `next_cursor`."""
    return f"{page}?" + urlencode({"cursor": next_cursor}) if next_cursor else None


def switch_account(
    engine: Engine,
    who: SignedIn,
    catalog: Catalog,
    vault: Vault,
    account_id: str,
    form: Mapping[str, str],
) -> None:
    """Enable or disable an account as PATCH does: its state machine, and a 409
    `account_changed` when its status changed since this request read it."""
    status = field(form, "status")
    if status not in SWITCHABLE:
        raise invalid("status", "one of " + ", ".join(SWITCHABLE))
    update_account(
        engine, who.tenant, catalog, vault, account_id, credentials=None, config=None, status=status
    )
