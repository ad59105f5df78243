"""The console's pages of data: the Function Calls log and one call with its webhook
deliveries, read with the API's own queries (`api/call_log.py`,
`api/webhook_deliveries.py`) for the signed-in tenant alone. With `live=1` in its query
string, a page showing an unfinished call reloads itself every REFRESH_S seconds (a
`<meta http-equiv="refresh">`: no script); only then, so a reload never interrupts a
filter being typed or a button being pressed unasked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from api.call_log import list_calls, load_attempts, load_call
from api.console.forms import field, live, log_filter
from api.console.pages import render
from api.console.visitor import SignedIn
from api.webhook_deliveries import deliveries_of
from models.calls.resources import call_out
from models.calls.states import CallStatus

# Calls on one page of the log.
PAGE_SIZE = 50
FILTER_FIELDS = ("app", "status", "user_id", "batch_id", "network_code", "since", "until")
# Seconds between the reloads of a page followed live that shows an unfinished call.
REFRESH_S = 2


def _live(
    path: str, kept: Mapping[str, str | None], following: bool, unfinished: bool
) -> dict[str, Any]:
    """What a page needs to be followed live: whether it reloads, and the link that starts
    or stops following (keeping the page's other values)."""
    values = {name: value for name, value in kept.items() if value}
    if not following:
        values["live"] = "1"
    query = urlencode(values)
    return {
        "following": following,
        "refresh_s": REFRESH_S if following and unfinished else None,
        "live_toggle": f"{path}?{query}" if query else path,
    }


def log_page(engine: Engine, who: SignedIn, params: Mapping[str, str]) -> HTMLResponse:
    """A page of the log, newest first, under the query string's filters and cursor."""
    filters = log_filter(params)
    following = live(params)
    cursor = field(params, "cursor")
    rows, next_cursor = list_calls(engine, who.tenant, filters, cursor, PAGE_SIZE)
    values = {name: field(params, name) for name in FILTER_FIELDS}
    unfinished = any(not row.status.is_final for row in rows)
    shown = {**values, "cursor": cursor}
    next_url = None
    if next_cursor:
        kept = {name: value for name, value in values.items() if value}
        if following:
            kept["live"] = "1"
        next_url = "/console?" + urlencode({**kept, "cursor": next_cursor})
    return render(
        "log.html",
        calls=[call_out(row) for row in rows],
        values=values,
        statuses=[s.value for s in CallStatus],
        next_url=next_url,
        **_live("/console", shown, following, unfinished),
        csrf_token=who.csrf_token,
        signed_in=True,
    )


def call_page(
    engine: Engine, who: SignedIn, call_id: str, params: Mapping[str, str]
) -> HTMLResponse:
    """One call: the request, the result, its headers, the attempts and the deliveries."""
    following = live(params)
    call = load_call(engine, who.tenant, call_id)
    shown = call_out(call, load_attempts(engine, call.id))
    return render(
        "call.html",
        call=shown,
        ended=call.status.is_final,
        **_live(f"/console/calls/{call.id}", {}, following, not call.status.is_final),
        deliveries=deliveries_of(engine, who.tenant, call_id),
        request_headers=call.request_headers,
        request_body=call.request_body,
        csrf_token=who.csrf_token,
        signed_in=True,
    )
