"""The console in Chromium: signing in and out, the log and its filters, a call's page,
cancel, tenancy, hostile content, offline docs, narrow screens; batches, connected
accounts and their switches, and a call's webhook deliveries with redelivery."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from models.accounts.states import AccountStatus
from models.calls.states import CallStatus
from models.crypto.secrets import Vault
from models.db.engine import session_scope, utcnow
from models.db.tables import CallAttempt, ConnectedAccount, FunctionCall
from tests.browser import Visit
from tests.console.conftest import Tenancy
from tests.console.test_console_http import make_batch
from tests.worker.factories import make_account

pytestmark = pytest.mark.browser


def test_a_wrong_key_is_refused_a_right_one_signs_in_and_out(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    # Given a tenant with one call
    tenancy.call(url="https://slack.com/api/users.list")
    tab = visit()
    # When a wrong key is tried, Then a clear message shows and the log stays closed
    tab.sign_in("not-a-key")
    expect(tab.page.get_by_role("alert")).to_contain_text("not valid")
    tab.go("/console")
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
    # When the right key is given, Then the log shows the tenant's call
    tab.sign_in(tenancy.key)
    expect(tab.page.get_by_role("heading", name="Function Calls")).to_be_visible()
    expect(tab.page.get_by_text("users.list")).to_be_visible()
    # When the tenant signs out, Then the log is closed again
    tab.page.get_by_role("button", name="Sign out").click()
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
    tab.go("/console")
    expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()


def signed_in(visit: Callable[..., Visit], tenancy: Tenancy, width: int = 1280) -> Visit:
    tab = visit(width)
    tab.sign_in(tenancy.key)
    expect(tab.page.get_by_role("heading", name="Function Calls")).to_be_visible()
    return tab


def rows(tab: Visit) -> list[str]:
    """The call ids the log page shows, top to bottom."""
    return tab.page.locator("table.log tbody tr td:first-child").all_inner_texts()


# The log's URL once its filter form was submitted (before, it has no query string).
FILTERED = re.compile(r"/console\?")


def filter_by_form(tab: Visit) -> None:
    """Press Filter and wait for the filtered page: the field already shows its value
    before the form is sent, so only the URL says the new page has come."""
    tab.page.get_by_role("button", name="Filter").click()
    expect(tab.page).to_have_url(FILTERED)


def test_the_log_is_newest_first_and_each_filter_narrows_it(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    # Given calls that differ in one field each, the last made first
    now = utcnow()
    old = tenancy.call(created_at=now - timedelta(days=2), user_id="user-old")
    ok = tenancy.call(status=CallStatus.COMPLETED, network_code="200", user_id="user-ok")
    limited = tenancy.call(status=CallStatus.COMPLETED, network_code="429", user_id="user-b")
    batched = tenancy.call(batch_id="fb_batch1", user_id="user-b")
    github = tenancy.call(app="github", url="https://api.github.com/user", user_id="user-b")
    tab = signed_in(visit, tenancy)
    # (ids are time-ordered: newest first is the ids' descending order)
    assert rows(tab) == sorted((c.id for c in tenancy.calls), reverse=True)
    row = tab.page.locator("table.log tbody tr", has_text=limited.id)
    for shown in (limited.id, "slack", "user-b", "GET", "completed", "429"):
        expect(row).to_contain_text(shown)
    # When each filter is set alone, Then only its calls are listed
    cases = [
        ("App", "github", [github.id]),
        ("User", "user-ok", [ok.id]),
        ("Batch", "fb_batch1", [batched.id]),
        ("Network code", "429", [limited.id]),
    ]
    for label, value, expected in cases:
        tab.go("/console")
        tab.page.get_by_label(label).fill(value)
        filter_by_form(tab)
        expect(tab.page.get_by_label(label)).to_have_value(value)
        assert rows(tab) == expected, label
    tab.go("/console")
    tab.page.get_by_label("Status").select_option("completed")
    filter_by_form(tab)
    assert rows(tab) == sorted([limited.id, ok.id], reverse=True)
    # And the time range: calls from a day ago, and calls until a day ago
    day_ago = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    tab.go("/console")
    tab.page.get_by_label("Until (UTC)").fill(day_ago)
    filter_by_form(tab)
    assert rows(tab) == [old.id]
    tab.go("/console")
    tab.page.get_by_label("From (UTC)").fill(day_ago)
    filter_by_form(tab)
    assert old.id not in rows(tab)
    assert len(rows(tab)) == 4


def test_next_pages_through_the_log_keeping_the_filters(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    # Given 52 calls of one user and one of another
    made = [tenancy.call(user_id="pager").id for _ in range(52)]
    tenancy.call(user_id="someone-else")
    tab = signed_in(visit, tenancy)
    tab.go("/console?user_id=pager")
    # When Next is followed, Then the second page holds the two oldest, and no Next
    assert rows(tab) == sorted(made, reverse=True)[:50]
    tab.page.get_by_role("link", name="Next").click()
    assert rows(tab) == sorted(made, reverse=True)[50:]
    expect(tab.page.get_by_label("User")).to_have_value("pager")
    expect(tab.page.get_by_role("link", name="Next")).to_have_count(0)


def test_a_calls_page_shows_request_result_headers_and_attempts(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    # Given a call that was rate limited, retried, then answered
    call = tenancy.call(
        method="POST",
        url="https://slack.com/api/chat.postMessage",
        body={"channel": "C1", "text": "hello"},
        headers={"X-Trace": "t-1"},
        status=CallStatus.COMPLETED,
        network_code="200",
        output={"ok": True, "ts": "1.2"},
        response_headers={"content-type": "application/json"},
        duration_ms=1234,
        attempt_count=2,
    )
    add_attempts(tenancy, call.id)
    tab = signed_in(visit, tenancy)
    # When its row is opened
    tab.page.get_by_role("link", name=call.id).click()
    page = tab.page
    # Then the request, the pretty result, the headers and the timeline are there
    expect(page.get_by_role("heading", name=f"Call {call.id}")).to_be_visible()
    expect(page.locator("section", has_text="Request")).to_contain_text("chat.postMessage")
    expect(page.locator("pre.json").first).to_contain_text('"channel": "C1"')
    expect(page.locator("pre.json").nth(1)).to_contain_text('"ok": true')
    expect(page.get_by_text("x-trace", exact=False)).to_be_visible()
    attempts = page.locator("ol.timeline > li")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("HTTP 429")
    expect(attempts.nth(0)).to_contain_text("1500 ms (slack:token)")
    expect(attempts.nth(0)).to_contain_text("retry in 2 s")
    expect(attempts.nth(1)).to_contain_text("HTTP 200")
    expect(attempts.nth(1)).to_contain_text("done")
    # And an ended call has no cancel button
    expect(page.get_by_role("button", name="Cancel this call")).to_have_count(0)


def add_attempts(tenancy: Tenancy, call_id: str) -> None:
    """A 429 held 1.5 s by a limit, then a 200, as the worker records them."""

    first = {"network_code": "429", "decision": "retry in 2 s", "rate_wait_ms": 1500}
    second = {"network_code": "200", "decision": "done"}
    with session_scope(tenancy.engine) as session:
        for number, fields in enumerate((first, second), start=1):
            session.add(
                CallAttempt(
                    call_id=call_id,
                    number=number,
                    started_at=utcnow(),
                    duration_ms=80,
                    rate_wait_reason="slack:token" if number == 1 else None,
                    **fields,
                )
            )


def test_cancel_ends_a_queued_call(visit: Callable[..., Visit], tenancy: Tenancy) -> None:
    # Given a queued call on its page
    call = tenancy.call()
    tab = signed_in(visit, tenancy)
    tab.go(f"/console/calls/{call.id}")
    expect(tab.page.get_by_text("No attempt yet.")).to_be_visible()
    # When Cancel is pressed, Then the call is cancelled and the button gone
    tab.page.get_by_role("button", name="Cancel this call").click()
    expect(tab.page.locator("dl.summary .status")).to_have_text("cancelled")
    expect(tab.page.get_by_role("button", name="Cancel this call")).to_have_count(0)


def test_a_second_tenant_sees_none_of_the_firsts_calls(
    visit: Callable[..., Visit], new_tenancy: Callable[[], Tenancy]
) -> None:
    # Given two tenants, the first with a call
    first, second = new_tenancy(), new_tenancy()
    call = first.call()
    # When the second signs in, Then its log is empty and the first's call is not found
    tab = signed_in(visit, second)
    expect(tab.page.get_by_text("No calls match.")).to_be_visible()
    tab.go(f"/console/calls/{call.id}")
    expect(tab.page.get_by_role("heading", name="404: not found")).to_be_visible()
    tab.go(f"/console?batch_id={call.id}")
    expect(tab.page.get_by_text("No calls match.")).to_be_visible()


def test_markup_in_a_call_is_shown_as_text_and_never_runs(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    # Given a call whose URL, body, answer and user hold markup and script
    script = "<script>window.pwned = 1</script><img src=x onerror='window.pwned=2'>"
    call = tenancy.call(
        url=f"https://slack.com/api/x?q={script}",
        body={"text": script},
        user_id=f"u{script}",
        status=CallStatus.COMPLETED,
        output=script,
        response_headers={"x-evil": script},
    )
    tab = signed_in(visit, tenancy)
    # When the log and the call's page show it, Then it is text and nothing ran
    expect(tab.page.locator("table.log")).to_contain_text("<script>window.pwned = 1</script>")
    tab.go(f"/console/calls/{call.id}")
    expect(tab.page.locator("pre.text")).to_have_text(script)
    assert tab.page.evaluate("window.pwned") is None
    assert tab.page.locator("main script, main img").count() == 0


def test_docs_and_redoc_render_their_operations_offline(visit: Callable[..., Visit]) -> None:
    # When /docs and /redoc open (the fixture fails any request to another origin)
    tab = visit()
    tab.go("/docs")
    # Then Swagger UI lists the operations, and ReDoc renders them
    expect(tab.page.locator(".opblock").first).to_be_visible()
    expect(tab.page.get_by_text("/function-calls/{call_id}").first).to_be_visible()
    tab.go("/redoc")
    expect(
        tab.page.get_by_role("heading", name="The Function Calls log, newest first")
    ).to_be_visible()


def assert_fits_and_labelled(tab: Visit, width: int, path: str) -> None:
    """The tab's page is no wider than `width` (no table clipped in its scroller either), and
    every input on it has a label."""
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= width, path
    clipped = tab.page.evaluate(
        "[...document.querySelectorAll('.scroll')].filter(e => e.scrollWidth > e.clientWidth)"
        ".length"
    )
    assert clipped == 0, path
    unlabelled = tab.page.evaluate(
        "[...document.querySelectorAll('input:not([type=hidden]), select')]"
        ".filter(e => e.labels.length === 0).map(e => e.name)"
    )
    assert unlabelled == [], path


def test_every_page_fits_390_px_and_every_input_has_a_label(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    call = tenancy.call(url="https://slack.com/api/" + "a-long-path-segment/" * 12)
    tab = signed_in(visit, tenancy, width=390)
    batch_id = make_batch(tenancy, [CallStatus.COMPLETED, CallStatus.QUEUED])
    pages = ("/console", f"/console/calls/{call.id}", "/console/sign-in", "/console/accounts")
    for path in (*pages, "/console/batches", f"/console/batches/{batch_id}"):
        tab.go(path)
        assert_fits_and_labelled(tab, 390, path)


def test_signing_in_and_filtering_work_from_the_keyboard(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    # Given a call, and a tab on the sign-in page
    call = tenancy.call(user_id="keyboard-user")
    tab = visit()
    tab.go("/console/sign-in")
    page = tab.page
    # When the key is typed after tabbing to its field, and Enter pressed
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "api_key":
            break
    page.keyboard.type(tenancy.key)
    page.keyboard.press("Enter")
    # Then the log opens; and a filter typed into its field applies on Enter
    expect(page.get_by_role("heading", name="Function Calls")).to_be_visible()
    page.get_by_label("User").focus()
    page.keyboard.type("keyboard-user")
    page.keyboard.press("Enter")
    expect(page).to_have_url(FILTERED)
    expect(page.get_by_label("User")).to_have_value("keyboard-user")
    assert rows(tab) == [call.id]


def test_accounts_show_their_status_in_words_and_disable_then_enable(
    visit: Callable[..., Visit], tenancy: Tenancy, vault: Vault
) -> None:
    # Given an active account and one whose credentials were revoked
    revoked = make_account(tenancy.engine, tenancy.tenant, vault, app="github")
    with session_scope(tenancy.engine) as session:
        account = session.get(ConnectedAccount, revoked.id)
        assert account is not None
        account.status = AccountStatus.NEEDS_REAUTH
    tab = signed_in(visit, tenancy)
    # When the accounts page opens from the header
    tab.page.get_by_role("navigation").get_by_role("link", name="Connected accounts").click()
    page = tab.page
    expect(page.get_by_role("heading", name="Connected accounts")).to_be_visible()
    # Then the revoked one says so in words, and the active one is active
    expect(page.locator("tr", has_text=revoked.id)).to_contain_text("Needs reauth")
    active = page.locator("tr", has_text=tenancy.account.id)
    expect(active).to_contain_text("active")
    # When the active one is disabled, Then it says Disabled and offers Enable
    page.get_by_role("button", name=f"Disable {tenancy.account.id}").click()
    expect(active).to_contain_text("Disabled")
    # And enabling it makes it active again
    page.get_by_role("button", name=f"Enable {tenancy.account.id}").click()
    expect(active.locator(".status")).to_have_text("active")
    expect(page.get_by_role("button", name=f"Disable {tenancy.account.id}")).to_be_visible()


def test_a_batch_shows_its_progress_and_links_to_its_calls(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    # Given a batch of three calls: two completed, one failed... and one queued
    S = CallStatus
    batch_id = make_batch(tenancy, [S.COMPLETED, S.COMPLETED, S.FAILED, S.QUEUED])
    tenancy.call(user_id="not-in-the-batch")
    tab = signed_in(visit, tenancy)
    # When the batches page opens from the header and the batch is followed
    tab.page.get_by_role("navigation").get_by_role("link", name="Batches").click()
    expect(tab.page.get_by_role("heading", name="Batches")).to_be_visible()
    expect(tab.page.locator("tr", has_text=batch_id)).to_contain_text("3 of 4 ended")
    tab.page.get_by_role("link", name=batch_id).click()
    # Then its counts per status show, and its link lists its calls alone
    counts = tab.page.locator("ul.counts")
    expect(counts.locator(".count-completed .n")).to_have_text("2")
    expect(counts.locator(".count-failed .n")).to_have_text("1")
    expect(counts.locator(".count-queued .n")).to_have_text("1")
    expect(tab.page.locator("svg.bar rect.seg")).to_have_count(3)
    tab.page.get_by_role("link", name="This batch's calls in the log").click()
    expect(tab.page.get_by_label("Batch")).to_have_value(batch_id)
    assert sorted(rows(tab)) == sorted(c.id for c in tenancy.calls if c.batch_id == batch_id)


def test_redeliver_sends_a_calls_webhook_again(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    # Given a completed call with a callback and no delivery yet
    call = tenancy.call(status=CallStatus.COMPLETED, callback_url="https://hooks.example.com/in")
    tab = signed_in(visit, tenancy)
    tab.go(f"/console/calls/{call.id}")
    expect(tab.page.get_by_text("No webhook delivery.")).to_be_visible()
    # When Redeliver is pressed, Then a pending delivery to the callback is listed
    tab.page.get_by_role("button", name="Redeliver the webhook").click()
    delivery = tab.page.locator("table.deliveries tbody tr")
    expect(delivery).to_have_count(1)
    expect(delivery).to_contain_text("https://hooks.example.com/in")
    expect(delivery).to_contain_text("pending")


def test_a_second_tenant_sees_none_of_the_firsts_batches_or_accounts(
    visit: Callable[..., Visit], new_tenancy: Callable[[], Tenancy]
) -> None:
    first, second = new_tenancy(), new_tenancy()
    batch_id = make_batch(first, [CallStatus.COMPLETED])
    tab = signed_in(visit, second)
    tab.go("/console/batches")
    expect(tab.page.get_by_text("No batches yet.")).to_be_visible()
    tab.go(f"/console/batches/{batch_id}")
    expect(tab.page.get_by_role("heading", name="404: not found")).to_be_visible()
    tab.go("/console/accounts")
    expect(tab.page.locator("table.accounts")).not_to_contain_text(first.account.id)
    expect(tab.page.locator("table.accounts")).to_contain_text(second.account.id)


def finish(tenancy: Tenancy, call_id: str, code: str = "200") -> None:
    """As a worker would: the call completed with `code`."""
    with session_scope(tenancy.engine) as session:
        row = session.get(FunctionCall, call_id)
        assert row is not None
        row.status, row.network_code = CallStatus.COMPLETED, code


def test_a_calls_page_shows_its_end_in_place_without_reloading(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    # Given a running call's page, marked so that a reload would be seen
    call = tenancy.call(status=CallStatus.RUNNING)
    tab = signed_in(visit, tenancy)
    tab.go(f"/console/calls/{call.id}")
    expect(tab.page.get_by_role("button", name="Cancel this call")).to_be_visible()
    tab.page.evaluate("window.notReloaded = true")
    # When a worker finishes it, Then the page shows it completed by itself, in place
    finish(tenancy, call.id)
    expect(tab.page.locator("dl.summary .status")).to_have_text("completed", timeout=30_000)
    expect(tab.page.get_by_role("button", name="Cancel this call")).to_have_count(0)
    expect(tab.page.get_by_role("status")).to_contain_text("no longer updates")
    assert tab.page.evaluate("window.notReloaded") is True


def test_the_log_updates_its_rows_in_place_and_keeps_a_filter_being_typed(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    # Given the log showing a queued call, and a filter half typed
    queued = tenancy.call(user_id="user-live")
    tab = signed_in(visit, tenancy)
    row = tab.page.locator(f"#call-{queued.id}")
    expect(row).to_contain_text("queued")
    tab.page.get_by_label("User").fill("user-li")
    tab.page.evaluate("window.notReloaded = true")
    # When the call completes and a new call is made
    finish(tenancy, queued.id, "201")
    newer = tenancy.call(user_id="user-new")
    # Then its row shows it, the new call appears on top, and nothing else moved
    expect(row).to_contain_text("completed", timeout=30_000)
    expect(row).to_contain_text("201")
    expect(tab.page.locator("table.log tbody tr").first).to_have_id(
        f"call-{newer.id}", timeout=30_000
    )
    expect(tab.page.get_by_label("User")).to_have_value("user-li")
    assert tab.page.evaluate("window.notReloaded") is True
    assert tab.foreign() == []
