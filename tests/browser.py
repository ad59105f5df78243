"""A real browser for the console's tests: Debian's Chromium (`/usr/bin/chromium`, never
Playwright's own download) driven by Playwright, each tab recording every request it makes.
The fixtures need an `origin` fixture: the service's base URL."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request

# Debian's Chromium: Playwright's own browser download is not reachable here.
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium, headless, for one test module (Playwright's loop stops with it); skipped
    where it is missing, except in CI, where that fails."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@dataclass
class Visit:
    """A browser tab of its own (own cookies) on the console, and every URL it asked for."""

    page: Page
    origin: str
    requested: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def go(self, path: str) -> None:
        self.page.goto(self.origin + path)

    def sign_in(self, key: str) -> None:
        self.go("/console/sign-in")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()

    def foreign(self) -> list[str]:
        """The requests that left the service's origin: each URL but the origin's own, its
        blobs (`blob:<origin>/...`), inline data, and those the page's Content-Security-Policy
        stopped in the browser (ReDoc's footer logo)."""
        own = (self.origin + "/", f"blob:{self.origin}/", "data:")
        return [
            url for url in self.requested if not url.startswith(own) and url not in self.blocked
        ]

    def record(self, request: Request) -> None:
        self.requested.append(request.url)

    def record_failure(self, request: Request) -> None:
        if (request.failure or "").lower() in ("csp", "net::err_blocked_by_csp"):
            self.blocked.append(request.url)


@pytest.fixture
def visit(browser: Browser, origin: str) -> Iterator[Callable[..., Visit]]:
    """Open a tab (a new browser context) at `width` px; at the end every tab must have
    asked the service's origin alone."""
    visits: list[Visit] = []

    def open_tab(width: int = 1280) -> Visit:
        context = browser.new_context(viewport={"width": width, "height": 900})
        opened = Visit(context.new_page(), origin)
        opened.page.on("request", opened.record)
        opened.page.on("requestfailed", opened.record_failure)
        visits.append(opened)
        return opened

    yield open_tab
    for opened in visits:
        opened.page.context.close()
    assert [url for opened in visits for url in opened.foreign()] == []
