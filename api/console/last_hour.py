"""The console's "Last hour" page: the signed-in tenant's calls per minute by status, and
the upstream latency per app, as inline SVG charts with their numbers in tables beneath.
"Now" is the server's UTC time, from `console_now`, a dependency tests replace. An open
page moves the hour on by itself, in place, once a minute (`static/live.js`)."""

from __future__ import annotations

from datetime import datetime

from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from api.console.chart_geometry import calls_chart, latency_chart, minutes, window
from api.console.chart_queries import SAMPLE, calls_per_minute, latency_by_app
from api.console.pages import render
from api.console.screens import LIVE_EVERY_MS
from api.console.views import BAR_ORDER
from api.console.visitor import SignedIn
from models.db.engine import utcnow

# Milliseconds between an open page's looks: the charts move on by the minute.
LIVE_IDLE_MS = 60_000


async def console_now() -> datetime:
    """The moment the charts end at: the server's clock, in UTC."""
    return utcnow()


def charts_page(engine: Engine, who: SignedIn, now: datetime) -> HTMLResponse:
    since, until = window(now)
    per_minute = minutes(since, calls_per_minute(engine, who.tenant.id, since, until))
    latencies = latency_by_app(engine, who.tenant.id, since, until)
    return render(
        "charts.html",
        since=since,
        until=until,
        per_minute=per_minute,
        calls=sum(m.total for m in per_minute),
        calls_chart=calls_chart(per_minute),
        latencies=latencies,
        latency_chart=latency_chart(latencies),
        statuses=BAR_ORDER,
        sample=SAMPLE,
        live_every_ms=LIVE_EVERY_MS,
        live_idle_ms=LIVE_IDLE_MS,
        csrf_token=who.csrf_token,
        signed_in=True,
    )
