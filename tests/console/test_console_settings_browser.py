"""The rate limits and webhook endpoint pages in Chromium: setting the URL and seeing the
secret once, rotating it, no secret on a later visit; an account's limits and pause; both
pages at 390 px with every input labelled. Every tab fails its test if it asked another
origin (`tests/browser.py`)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from playwright.sync_api import expect

from models.ratelimit.store import MemoryLimiter
from tests.browser import Visit
from tests.console.conftest import Tenancy
from tests.console.test_console_browser import assert_fits_and_labelled, signed_in
from tests.console.test_console_settings_http import HOOK, SECRET, book

pytestmark = pytest.mark.browser


def shown_secret(tab: Visit) -> str:
    text = tab.page.locator(".secret-value").inner_text()
    assert SECRET.fullmatch(text), text
    return text


def test_set_the_url_see_the_secret_once_rotate_and_see_none_after(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    tab = signed_in(visit, tenancy)
    tab.page.get_by_role("link", name="Webhook").click()
    expect(tab.page.get_by_text("No webhook URL is set")).to_be_visible()
    # When a URL is saved, Then the answer shows the new secret, once
    tab.page.get_by_label("Webhook URL").fill(HOOK)
    tab.page.get_by_role("button", name="Save").click()
    expect(tab.page.get_by_role("heading", name="Signing secret")).to_be_visible()
    first = shown_secret(tab)
    expect(tab.page.get_by_text("it will not be shown again")).to_be_visible()
    # Reloading the answer posts the same URL again: no new secret, and none shown
    tab.page.reload()
    expect(tab.page.get_by_label("Webhook URL")).to_have_value(HOOK)
    expect(tab.page.locator(".secret-value")).to_have_count(0)
    assert "whsec_" not in tab.page.content()
    # When the secret is rotated, Then the new one shows once, with the old one's grace
    tab.page.get_by_role("button", name="Rotate secret").click()
    expect(tab.page.get_by_role("heading", name="New signing secret")).to_be_visible()
    assert shown_secret(tab) != first
    expect(tab.page.get_by_text("The old secret keeps signing for 24 hours")).to_be_visible()
    # And a later visit shows the URL and no secret
    tab.go("/console/webhook")
    expect(tab.page.get_by_text(HOOK, exact=True)).to_be_visible()
    assert "whsec_" not in tab.page.content()


def test_a_private_url_is_refused_with_a_page_naming_the_field(
    visit: Callable[..., Visit], tenancy: Tenancy
) -> None:
    tab = signed_in(visit, tenancy)
    tab.go("/console/webhook")
    tab.page.get_by_label("Webhook URL").fill("http://10.1.2.3/hook")
    tab.page.get_by_role("button", name="Save").click()
    expect(tab.page.get_by_role("heading", name="400: invalid params")).to_be_visible()
    expect(tab.page.get_by_role("alert")).to_contain_text("url")
    tab.go("/console/webhook")
    expect(tab.page.get_by_text("No webhook URL is set")).to_be_visible()


def test_the_rate_limits_page_shows_an_accounts_limits_and_pause(
    console_app: FastAPI, visit: Callable[..., Visit], tenancy: Tenancy, limiter: MemoryLimiter
) -> None:
    pause = book(console_app, limiter, tenancy, 3)
    limiter.pause(pause, 30_000)
    tab = signed_in(visit, tenancy)
    tab.page.get_by_role("link", name="Rate limits").click()
    account = tab.page.locator(f"#limits-{tenancy.account.id}")
    expect(account.get_by_role("heading")).to_contain_text("slack")
    expect(account.get_by_text("Paused", exact=True)).to_be_visible()
    expect(account.get_by_text("(30.0 s from now)", exact=False)).to_be_visible()
    conversations = account.locator("tr.limit", has_text="^/api/conversations")
    expect(conversations).to_contain_text(re.compile(r"3\s+of 20 per 60 s"))
    expect(conversations.locator(".wait")).to_have_text("9000 ms")
    expect(conversations.locator("svg.bar rect.seg-use")).to_have_count(1)


def test_both_pages_fit_390_px_and_every_input_has_a_label(
    console_app: FastAPI, visit: Callable[..., Visit], tenancy: Tenancy, limiter: MemoryLimiter
) -> None:
    limiter.pause(book(console_app, limiter, tenancy, 25), 90_000)
    tab = signed_in(visit, tenancy, width=390)
    tab.go("/console/webhook")
    tab.page.get_by_label("Webhook URL").fill(HOOK + "/" + "a-long-path-segment/" * 10)
    tab.page.get_by_role("button", name="Save").click()
    expect(tab.page.locator(".secret-value")).to_have_count(1)
    for path in (None, "/console/webhook", "/console/rate-limits"):
        if path:
            tab.go(path)
        assert_fits_and_labelled(tab, 390, path or "the saved answer")
