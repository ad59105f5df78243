"""`docs/apps.md` is written from the catalog, and the committed page is current."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.cli import main
from models.catalog.apps import load_catalog, parse_catalog
from models.catalog.docs import auth_styles, limits, render

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_page_is_what_the_catalog_writes() -> None:
    committed = (ROOT / "docs" / "apps.md").read_text()
    assert committed == render(load_catalog()), (
        "docs/apps.md is out of date: run `passthru apps docs > docs/apps.md`"
    )


def test_the_command_prints_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apps", "docs"]) == 0
    assert capsys.readouterr().out == render(load_catalog())


def test_the_readme_links_the_page() -> None:
    assert "(docs/apps.md)" in (ROOT / "README.md").read_text()


APPS = parse_catalog(
    {
        "one": {
            "name": "One | Two",
            "category": "crm",
            "base_url": "https://api.one.example",
            "allowed_hosts": ["api.one.example"],
            "auth": {"type": "header", "name": "X-Key"},
            "rate_limits": [
                {"scope": "account", "limit": 5, "period_s": 1, "path": "^/(a|b)"},
                {"scope": "app", "limit": 100, "period_s": 60, "burst": 10},
            ],
            "retry": {"reset_header": "X-Reset"},
            "docs_url": "https://one.example/docs",
        },
        "two": {
            "name": "Two",
            "base_url": "https://api.two.example",
            "allowed_hosts": ["api.two.example"],
            "auth": {"type": "bearer"},
            "oauth2": {"token_url": "https://api.two.example/token"},
        },
        "demo": {
            "name": "Demo",
            "category": "devtools",
            "base_url": "https://demo.example",
            "allowed_hosts": ["demo.example"],
            "auth": {"type": "basic", "api_key_as": "username"},
        },
    },
    "test",
)


def test_auth_and_limits_are_short_phrases() -> None:
    assert auth_styles(APPS["one"]) == "API key (header `X-Key`)"
    assert auth_styles(APPS["two"]) == "OAuth2 (bearer)"
    assert auth_styles(APPS["demo"]) == (
        "API key, username and password (basic, API key as username)"
    )
    assert limits(APPS["one"]) == (
        "account 5/1 s on `^/(a|b)`; app 100/60 s (burst 10); headers `X-Reset`"
    )
    assert limits(APPS["two"]) == "—"


def test_the_page_counts_each_category_and_lists_each_app_once() -> None:
    # Given two apps (and the demo, which is not an integration) / When the page is written
    page = render(APPS.values())
    # Then every category is counted, even at 0, the demo is left out, and a '|' in a cell
    # does not break the table
    assert "| crm | 1 |" in page
    assert "| identity | 0 |" in page
    assert "| (none) | 1 |" in page
    assert "| **all** | **2** |" in page
    assert "`demo`" not in page
    assert (
        "| `one` | One \\| Two | crm | API key (header `X-Key`) | account 5/1 s on `^/(a\\|b)`"
        in page
    )
    assert "[docs](https://one.example/docs)" in page


def test_every_built_in_app_has_a_sources_section() -> None:
    # docs/catalog-sources.md says what each entry was checked against; apps.md links it
    sources = (ROOT / "docs" / "catalog-sources.md").read_text()
    sections = {line[3:] for line in sources.splitlines() if line.startswith("## ")}
    slugs = {app.slug for app in load_catalog() if app.slug != "demo"}
    assert slugs <= sections
    assert "(catalog-sources.md)" in render(load_catalog())
