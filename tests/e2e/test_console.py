"""The console in Chromium, over a call a real worker ran against the stand-in upstream."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.browser import Visit
from tests.e2e.conftest import Caller, Stack

# Marked `browser` like the console's other browser tests (it was missing here, so it ran on
# Postgres too): what it adds over the API's tests is Chromium, and browser tests run once.
pytestmark = pytest.mark.browser


@pytest.fixture
def origin(stack: Stack) -> str:
    return stack.base_url


def test_a_call_run_by_the_worker_shows_in_the_console(
    caller: Caller, visit: Callable[..., Visit]
) -> None:
    # Given a call the worker ran to the end
    caller.connect("slack", "u-console", {"access_token": "xoxb-e2e-console-token"})
    accepted = caller.http.post(
        "/slack-passthrough-request",
        headers={"X-User-ID": "u-console"},
        json={"method": "GET", "url": "https://slack.com/api/conversations.list?limit=2"},
    )
    assert accepted.status_code == 202, accepted.text
    call = caller.wait(accepted.json()["id"])
    assert call["status"] == "completed"
    # When its tenant signs in and opens it from the log
    tab = visit()
    tab.sign_in(caller.api_key)
    row = tab.page.locator("table.log tbody tr", has_text=call["id"])
    expect(row).to_contain_text("conversations.list")
    expect(row).to_contain_text("200")
    tab.page.get_by_role("link", name=call["id"]).click()
    # Then its result and its one attempt are there, and the token is nowhere on the page
    expect(tab.page.locator("dl.summary .status")).to_have_text("completed")
    expect(tab.page.locator("ol.timeline > li")).to_have_count(1)
    expect(tab.page.locator("ol.timeline > li")).to_contain_text("HTTP 200")
    expect(tab.page.locator("section", has_text="Result").locator("pre.json")).to_contain_text(
        '"ok": true'
    )
    assert "xoxb-e2e-console-token" not in tab.page.content()
