"""The "Last hour" page and the batches' paging in Chromium: the charts drawn at 1280 and
390 px without overflowing the page, their tables opened, and Next on the batches page."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import expect

from api.console.chart_geometry import window
from api.console.manage import BATCHES_SHOWN
from models.calls.states import CallStatus
from models.db.engine import session_scope
from models.db.ids import new_id
from models.db.tables import CallAttempt, FunctionCall
from tests.browser import Visit
from tests.console.conftest import Tenancy
from tests.console.test_console_charts import make_batches, pinned

__all__ = ["pinned"]
pytestmark = pytest.mark.browser

# How often each status comes up in a busy hour, and each app's typical latency (ms).
STATUS_WEIGHTS = {"completed": 80, "failed": 6, "retrying": 3, "running": 4, "queued": 7}
APP_MEDIAN_MS = {"slack": 180, "hubspot": 420, "pipedrive": 260, "zendesk": 650}


def fill_hour(tenancy: Tenancy, now: datetime, rng: random.Random) -> int:
    """A plausible hour of calls for `tenancy` up to `now`, with an answered attempt for
    each ended one; how many calls were written."""
    since, _ = window(now)
    calls: list[FunctionCall] = []
    attempts: list[CallAttempt] = []
    for minute in range(60):
        for _ in range(rng.randint(4, 16) + (12 if 20 <= minute < 28 else 0)):
            created = since + timedelta(minutes=minute, seconds=rng.uniform(0, 59))
            app = rng.choice(list(APP_MEDIAN_MS))
            status = rng.choices(list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values()))[0]
            if minute < 50 and status in ("queued", "running"):
                status = "completed"
            call = FunctionCall(
                id=new_id("fc"),
                tenant_id=tenancy.tenant.id,
                app=app,
                function=f"{app}-passthrough-request",
                user_id="user-1",
                connected_account_id=tenancy.account.id,
                method="GET",
                url="https://slack.com/api/conversations.list",
                status=CallStatus(status),
                created_at=created,
            )
            calls.append(call)
            if status in ("completed", "failed", "retrying"):
                ms = int(rng.lognormvariate(0, 0.5) * APP_MEDIAN_MS[app])
                code = "200" if status == "completed" else "503"
                attempts.append(
                    CallAttempt(
                        call_id=call.id,
                        number=1,
                        started_at=created,
                        duration_ms=ms,
                        network_code=code,
                        decision="done",
                    )
                )
    with session_scope(tenancy.engine) as session:
        session.add_all(calls)
        session.flush()
        session.add_all(attempts)
    return len(calls)


@pytest.mark.parametrize("width", [1280, 390])
def test_the_charts_fit_the_page_at_each_width(
    visit: Callable[..., Visit], tenancy: Tenancy, pinned: datetime, width: int
) -> None:
    # Given a busy hour
    fill_hour(tenancy, pinned, random.Random(16))
    tab = visit(width)
    tab.sign_in(tenancy.key)
    expect(tab.page.get_by_role("heading", name="Function Calls")).to_be_visible()
    # When the page opens from the header's link
    tab.page.get_by_role("navigation").get_by_role("link", name="Last hour").click()
    expect(tab.page.get_by_role("heading", name="Last hour", exact=True)).to_be_visible()
    # Then both charts are drawn, with their bars, inside the page's width
    for name in ("Calls per minute by status", "p50 and p95 upstream latency"):
        chart = tab.page.get_by_role("img", name=name)
        expect(chart).to_be_visible()
        box = chart.bounding_box()
        assert box is not None
        assert 0 < box["width"] <= width
        assert box["height"] > 50
        assert chart.locator("rect.seg").count() > 0
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= width
    # And each chart's numbers open beneath it, in a table
    tab.page.get_by_text("The numbers, app by app").click()
    table = tab.page.get_by_role("table", name="Upstream latency per app (ms)")
    expect(table.get_by_role("rowheader")).to_have_count(len(APP_MEDIAN_MS))
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= width


def test_next_pages_through_the_batches(visit: Callable[..., Visit], tenancy: Tenancy) -> None:
    # Given more batches than a page holds
    made = make_batches(tenancy, BATCHES_SHOWN + 3)
    tab = visit()
    tab.sign_in(tenancy.key)
    tab.go("/console/batches")
    links = tab.page.locator("table.batches tbody tr td:first-child a")
    expect(links).to_have_count(BATCHES_SHOWN)
    first = links.all_inner_texts()
    # When Next is followed
    tab.page.get_by_role("link", name="Next").click()
    expect(links).to_have_count(3)
    # Then the page holds the three oldest, none already shown, and no Next
    assert set(links.all_inner_texts()) == set(made[:3])
    assert not set(first) & set(made[:3])
    expect(tab.page.get_by_role("link", name="Next")).to_have_count(0)
    tab.page.get_by_role("link", name="Back to the newest").click()
    expect(links).to_have_count(BATCHES_SHOWN)
