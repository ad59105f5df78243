"""`GET /apps` and `GET /apps/{slug}`: the catalog, filtered by category, searched by `q`."""

from __future__ import annotations

from typing import Any

import pytest

from models.catalog.spec import CATEGORIES
from tests.api.conftest import Caller
from tests.api.test_errors import assert_error_shape


def _slugs(caller: Caller, query: str) -> list[str]:
    response = caller.client.get(f"/apps{query}", headers=caller.headers())
    assert response.status_code == 200, response.text
    return [app["slug"] for app in response.json()["apps"]]


def test_apps_lists_the_whole_catalog_sorted(caller: Caller) -> None:
    slugs = _slugs(caller, "")
    assert {"demo", "slack", "pipedrive", "zendesk"} <= set(slugs)
    assert slugs == sorted(slugs)


def test_a_category_selects_its_apps_only(caller: Caller) -> None:
    # Given the whole catalog / When listed by category
    everything = caller.client.get("/apps", headers=caller.headers()).json()["apps"]
    by_category = {c: _slugs(caller, f"?category={c}") for c in CATEGORIES}
    # Then each app is in exactly its own category's list
    assert by_category["crm"]
    assert "pipedrive" in by_category["crm"]
    assert "slack" not in by_category["crm"]
    for app in everything:
        assert app["slug"] in by_category[app["category"]]
    assert sum(map(len, by_category.values())) == len(everything)


@pytest.mark.parametrize(
    ("query", "included", "excluded"),
    [
        ("?q=slack", {"slack"}, {"pipedrive"}),
        ("?q=SLACK", {"slack"}, {"pipedrive"}),  # any case
        ("?q=Pipedrive%20CRM", {"pipedrive"}, {"slack"}),  # the description
        ("?q=zendesk", {"zendesk"}, {"slack"}),  # the slug and name
        ("?q=crm&category=chat", set(), {"pipedrive", "slack"}),  # both filters apply
        ("?q=", {"slack", "pipedrive"}, set()),  # empty: no filter
    ],
)
def test_q_searches_slug_name_and_description(
    caller: Caller, query: str, included: set[str], excluded: set[str]
) -> None:
    slugs = set(_slugs(caller, query))
    assert included <= slugs
    assert not excluded & slugs


def test_a_search_that_matches_nothing_is_an_empty_list(caller: Caller) -> None:
    assert _slugs(caller, "?q=no-such-app-anywhere") == []


@pytest.mark.parametrize(
    ("query", "field"),
    [("?category=other", "category"), ("?category=CRM", "category"), ("?q=" + "x" * 101, "q")],
)
def test_an_unknown_category_or_a_long_search_is_400_naming_it(
    caller: Caller, query: str, field: str
) -> None:
    for path in ("/apps", "/functions"):
        response = caller.client.get(f"{path}{query}", headers=caller.headers())
        assert response.status_code == 400
        body: dict[str, Any] = response.json()
        assert_error_shape(body, "invalid_params")
        assert body["error_details"][0]["field"] == field


def test_one_app_shows_its_connection_config_fields(caller: Caller) -> None:
    response = caller.client.get("/apps/zendesk", headers=caller.headers())
    assert response.status_code == 200
    app = response.json()
    assert app["connection_config"] == [
        {
            "name": "subdomain",
            "label": "Zendesk subdomain (the part before .zendesk.com)",
            "choices": None,
            "default": None,
            "required": True,
        }
    ]
    assert app["category"] == "ticketing"
    assert set(app["oauth2"]) == {
        "grant",
        "token_url",
        "authorize_url",
        "scopes",
        "scope_separator",
        "pkce",
        "authorize_params",
        "token_auth",
    }


def test_apps_need_a_key(caller: Caller) -> None:
    assert caller.client.get("/apps?category=crm").status_code == 401
