"""The console's "Last hour" page and its batch pages over HTTP: the numbers the tables
under the charts show for calls written at known minutes, statuses and durations, tenancy,
the empty hour; batches a page at a time and a hostile cursor."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.console.last_hour import console_now
from api.console.manage import BATCHES_SHOWN
from models.calls.states import CallStatus
from models.db.engine import session_scope
from models.db.ids import new_id
from models.db.tables import Batch, CallAttempt, FunctionCall
from tests.console.conftest import Tenancy, sign_in

# The pinned clock: the window runs from 06:09 to 07:09 (the 07:08 minute last).
NOW = datetime(2031, 5, 6, 7, 8, 30, tzinfo=UTC)
S = CallStatus


@pytest.fixture
def pinned(console_app: FastAPI) -> Iterator[datetime]:
    console_app.dependency_overrides[console_now] = lambda: NOW
    yield NOW
    console_app.dependency_overrides.pop(console_now)


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2031, 5, 6, hh, mm, ss, tzinfo=UTC)


def answered(
    tenancy: Tenancy, call: FunctionCall, *durations: int, code: str | None = "200"
) -> None:
    """Attempts of `call`, one per duration, that got `code` (None: no answer)."""
    with session_scope(tenancy.engine) as session:
        for number, ms in enumerate(durations, 1):
            session.add(
                CallAttempt(
                    call_id=call.id,
                    number=number,
                    started_at=call.created_at,
                    duration_ms=ms,
                    network_code=code,
                    error=None if code else "timeout",
                    decision="done",
                    rate_wait_ms=60_000,  # recorded apart: never in the latency
                )
            )


def minute_row(html: str, minute: str) -> dict[str, int]:
    """The counts of one minute in the table beneath the calls chart."""
    found = re.search(rf'<tr><th scope="row">{minute}</th>(.*?)</tr>', html)
    assert found, minute
    return {s: int(n) for s, n in re.findall(r'class="n-(\w+)">(\d+)<', found.group(1))}


def latency_rows(html: str) -> dict[str, tuple[str, str, str]]:
    """App → (answered attempts, p50, p95) from the table beneath the latency chart."""
    rows = re.findall(
        r'<tr><th scope="row">([^<]+)</th><td class="n-answers">(\d+)</td>'
        r'<td class="n-p50">([\d.]+)</td><td class="n-p95">([\d.]+)</td></tr>',
        html,
    )
    return {app: (n, p50, p95) for app, n, p50, p95 in rows}


def charts(client: TestClient) -> str:
    response = client.get("/console/charts")
    assert response.status_code == 200
    text: str = response.text
    return text


def test_the_last_hour_shows_exactly_the_tenants_calls_and_latencies(
    browser_client: TestClient,
    pinned: datetime,
    new_tenancy: Callable[[], Tenancy],
) -> None:
    # Given calls at known minutes, statuses and durations, and another tenant's calls
    mine, theirs = new_tenancy(), new_tenancy()
    for status in (S.COMPLETED, S.COMPLETED, S.FAILED):
        mine.call(status=status, created_at=at(6, 9, 5))
    mine.call(status=S.QUEUED, created_at=at(7, 8, 29))
    mine.call(status=S.RUNNING, created_at=at(6, 40, 59))
    old = mine.call(status=S.COMPLETED, created_at=at(6, 8, 59))  # before the window
    answered(mine, old, 5000)
    slack = [mine.call(status=S.COMPLETED, created_at=at(6, 30, s)) for s in range(4)]
    for call, ms in zip(slack, (400, 100, 300, 200), strict=True):
        answered(mine, call, ms)
    answered(mine, slack[0], 9000, code=None)  # no answer: not a latency
    hubspot = mine.call(status=S.COMPLETED, app="hubspot", created_at=at(6, 50))
    answered(mine, hubspot, 50)
    for _ in range(3):
        other = theirs.call(status=S.FAILED, created_at=at(6, 9, 5))
        answered(theirs, other, 7000)
    sign_in(browser_client, mine.key)
    # When the tenant opens the page
    html = charts(browser_client)
    # Then its table holds exactly its counts, minute by minute
    zero = {s.value: 0 for s in S}
    assert minute_row(html, "06:09") == {**zero, "completed": 2, "failed": 1, "all": 3}
    assert minute_row(html, "07:08") == {**zero, "queued": 1, "all": 1}
    assert minute_row(html, "06:40") == {**zero, "running": 1, "all": 1}
    assert minute_row(html, "06:30") == {**zero, "completed": 4, "all": 4}
    assert minute_row(html, "06:10") == {**zero, "all": 0}
    assert '<tr><th scope="row">06:08</th>' not in html
    assert len(re.findall(r'<tr><th scope="row">\d\d:\d\d</th>', html)) == 60
    # And the percentiles of the answered attempts, per app
    assert latency_rows(html) == {
        "hubspot": ("1", "50.0", "50.0"),
        "slack": ("4", "250.0", "385.0"),
    }
    # And both charts are drawn, one bar per minute and status, each with its title
    assert html.count('<svg class="chart') == 2
    assert html.count('class="seg seg-') == 6 + len(S)  # the bars, then the legend
    assert "<title>06:09 completed: 2</title>" in html
    # When the other tenant opens it, Then it sees its own calls alone
    sign_in(browser_client, theirs.key)
    html = charts(browser_client)
    assert minute_row(html, "06:09") == {**zero, "failed": 3, "all": 3}
    assert latency_rows(html) == {"slack": ("3", "7000.0", "7000.0")}


def test_an_empty_hour_says_so(
    browser_client: TestClient, pinned: datetime, tenancy: Tenancy
) -> None:
    tenancy.call(status=S.COMPLETED, created_at=NOW - timedelta(hours=2))
    sign_in(browser_client, tenancy.key)
    html = charts(browser_client)
    assert "No calls in the last hour." in html
    assert "No answered attempts in the last hour." in html
    assert '<svg class="chart' not in html
    assert 'href="/console/charts"' in html


def test_the_last_hour_moves_on_in_place_once_a_minute(
    browser_client: TestClient, pinned: datetime, tenancy: Tenancy
) -> None:
    tenancy.call(status=S.COMPLETED, created_at=NOW - timedelta(minutes=5))
    sign_in(browser_client, tenancy.key)
    html = charts(browser_client)
    # The page looks again every minute, and names the parts it swaps
    assert '<main data-live-every="2000" data-live-idle="60000">' in html
    assert '<script src="/console/live.js" defer></script>' in html
    for part in ("window", "calls-chart", "latency-chart"):
        assert f'id="{part}" data-live-part' in html
    # Nothing on it is unfinished, so it never looks every 2 s
    assert 'data-final="0"' not in html


def make_batches(tenancy: Tenancy, n: int) -> list[str]:
    """`n` batches of `tenancy`, two a second; their ids, oldest first (in the pages' order:
    by time, then id)."""
    start = datetime.now(UTC) - timedelta(days=1)
    batches = [
        Batch(
            id=new_id("fb"),
            tenant_id=tenancy.tenant.id,
            accepted=0,
            rejected=0,
            created_at=start + timedelta(seconds=i // 2),  # pairs share a time
        )
        for i in range(n)
    ]
    with session_scope(tenancy.engine) as session:
        session.add_all(batches)
    return [b.id for b in sorted(batches, key=lambda b: (b.created_at, b.id))]


BATCH_LINK = re.compile(r'<a href="/console/batches/(fb_\w+)">')
NEXT = re.compile(r'<a href="(/console/batches\?cursor=[^"]+)" rel="next">Next</a>')


def test_batches_page_by_page_via_next(browser_client: TestClient, tenancy: Tenancy) -> None:
    # Given more batches than a page holds
    made = make_batches(tenancy, BATCHES_SHOWN + 7)
    sign_in(browser_client, tenancy.key)
    # When the first page is read, then the page its Next link leads to
    first = browser_client.get("/console/batches").text
    link = NEXT.search(first)
    assert link
    second = browser_client.get(link.group(1))
    assert second.status_code == 200
    # Then the newest come first, the older ones after, none twice and none missed
    shown = BATCH_LINK.findall(first) + BATCH_LINK.findall(second.text)
    assert len(BATCH_LINK.findall(first)) == BATCHES_SHOWN
    assert shown == made[::-1]
    assert NEXT.search(second.text) is None
    assert 'href="/console/batches">Back to the newest' in second.text


def test_a_bad_cursor_is_a_400_page_naming_it(
    browser_client: TestClient, new_tenancy: Callable[[], Tenancy]
) -> None:
    mine, theirs = new_tenancy(), new_tenancy()
    their_batch = make_batches(theirs, 1)[0]
    sign_in(browser_client, mine.key)
    for cursor in ("fb_nope", their_batch, "%27%3B--", "%3Cscript%3E", "x" * 600):
        response = browser_client.get(f"/console/batches?cursor={cursor}")
        assert response.status_code == 400, cursor
        assert "<strong>cursor</strong>" in response.text
        assert their_batch not in response.text.split("<main>")[1]
