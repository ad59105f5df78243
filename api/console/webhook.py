"""The console's webhook endpoint page: the tenant's URL, set as `PUT /webhook-endpoint`
sets it and its secret rotated as `POST /webhook-endpoint/rotate-secret` rotates it
(`api/webhook_endpoint.py`: the same checks and refusals).

The signing secret is shown once, in the answer to the POST that made it (a 200 page, not a
redirect): it is never kept anywhere but the database, encrypted, so no later GET can show
it. A save that made no secret redirects to the page (303), so a reload does not post again.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Response
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from api.console.forms import field
from api.console.pages import render, see_other
from api.console.visitor import SignedIn
from api.schemas.webhooks import WebhookEndpointOut
from api.webhook_endpoint import get_endpoint, put_endpoint, rotate_secret
from models.crypto.secrets import Vault
from models.db.engine import utcnow
from models.errors import ApiError
from models.net.urls import MAX_CALLBACK_URL_CHARS
from models.webhooks.signing import PREVIOUS_SECRET_TTL_S

WEBHOOK_PATH = "/console/webhook"


def _current(engine: Engine, who: SignedIn) -> WebhookEndpointOut | None:
    """The tenant's endpoint, or None when it has none yet."""
    try:
        return get_endpoint(engine, who.tenant)
    except ApiError as error:
        if error.status_code == 404:
            return None
        raise


def _page(
    who: SignedIn, endpoint: WebhookEndpointOut | None, *, rotated: bool = False
) -> HTMLResponse:
    return render(
        "webhook.html",
        endpoint=endpoint,
        secret=endpoint.secret if endpoint else None,
        rotated=rotated,
        previous_hours=round(PREVIOUS_SECRET_TTL_S / 3600),
        max_url_chars=MAX_CALLBACK_URL_CHARS,
        csrf_token=who.csrf_token,
        signed_in=True,
    )


def webhook_page(engine: Engine, who: SignedIn) -> HTMLResponse:
    """The endpoint as it stands; never its secret (`get_endpoint` has none to give)."""
    return _page(who, _current(engine, who))


def save_url(
    engine: Engine, vault: Vault, who: SignedIn, form: Mapping[str, str], allow_private: bool
) -> Response:
    """Set the URL (blank clears it) as PUT does; the page with the secret if one was made."""
    url = field(form, "url", MAX_CALLBACK_URL_CHARS)
    saved = put_endpoint(engine, vault, who.tenant, url, utcnow(), allow_private)
    if saved.secret is None:
        return see_other(WEBHOOK_PATH)
    return _page(who, saved)


def rotate(engine: Engine, vault: Vault, who: SignedIn) -> HTMLResponse:
    """A new secret, shown in this answer alone; the previous one still signs a while."""
    return _page(who, rotate_secret(engine, vault, who.tenant, utcnow()), rotated=True)
