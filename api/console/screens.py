"""The console's pages of data: the Function Calls log and one call with its webhook
deliveries, read with the API's own queries (`api/call_log.py`,
`api/webhook_deliveries.py`) for the signed-in tenant alone. Both pages update in place
(`static/live.js`) while they show something unfinished: they name the parts that can
change, and how often to look again."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from api.call_log import list_calls, load_attempts, load_call
from api.console.forms import field, log_filter
from api.console.pages import render
from api.console.visitor import SignedIn
from api.webhook_deliveries import deliveries_of
from models.calls.resources import call_out
from models.calls.states import CallStatus

# Calls on one page of the log.
PAGE_SIZE = 50
FILTER_FIELDS = ("app", "status", "user_id", "batch_id", "network_code", "since", "until")
# Milliseconds between a live page's looks while it shows an unfinished call; and, on the
# log's first page, while everything shown has ended (so new calls appear).
LIVE_EVERY_MS = 2_000
LIVE_IDLE_MS = 10_000


def log_page(engine: Engine, who: SignedIn, params: Mapping[str, str]) -> HTMLResponse:
    """A page of the log, newest first, under the query string's filters and cursor."""
    filters = log_filter(params)
    cursor = field(params, "cursor")
    rows, next_cursor = list_calls(engine, who.tenant, filters, cursor, PAGE_SIZE)
    values = {name: field(params, name) for name in FILTER_FIELDS}
    next_url = None
    if next_cursor:
        kept = {name: value for name, value in values.items() if value}
        next_url = "/console?" + urlencode({**kept, "cursor": next_cursor})
    return render(
        "log.html",
        calls=[call_out(row) for row in rows],
        values=values,
        statuses=[s.value for s in CallStatus],
        next_url=next_url,
        live_every_ms=LIVE_EVERY_MS,
        live_idle_ms=None if cursor else LIVE_IDLE_MS,
        csrf_token=who.csrf_token,
        signed_in=True,
    )


def call_page(engine: Engine, who: SignedIn, call_id: str) -> HTMLResponse:
    """One call: the request, the result, its headers, the attempts and the deliveries."""
    call = load_call(engine, who.tenant, call_id)
    shown = call_out(call, load_attempts(engine, call.id))
    return render(
        "call.html",
        call=shown,
        ended=call.status.is_final,
        live_every_ms=LIVE_EVERY_MS,
        live_idle_ms=None,
        deliveries=deliveries_of(engine, who.tenant, call_id),
        request_headers=call.request_headers,
        request_body=call.request_body,
        csrf_token=who.csrf_token,
        signed_in=True,
    )
