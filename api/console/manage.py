"""The console's pages over batches and connected accounts, read and changed with the
API's own queries (`api/bulk_submission.py`, `api/account_store.py`) for the signed-in
tenant alone. An account's credentials are never read for a page."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from api.account_store import list_accounts, update_account
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

# Batches on a page of the batches page.
BATCHES_SHOWN = 100
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
        next_url="/console/batches?" + urlencode({"cursor": next_cursor}) if next_cursor else None,
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
    engine: Engine, who: SignedIn, link: ConnectSessionOut | None = None
) -> HTMLResponse:
    """The tenant's accounts, with how each was connected, and a connect link just made."""
    accounts = list_accounts(engine, who.tenant, None, None, None)
    return render(
        "accounts.html",
        accounts=[AccountOut.of(a) for a in accounts],
        link=link,
        csrf_token=who.csrf_token,
        signed_in=True,
    )


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
