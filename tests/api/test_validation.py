"""Checks a call must pass before anything is written."""

from __future__ import annotations

from typing import Any

import pytest

from api.schemas import PassthroughParams
from api.validation import (
    CheckedParams,
    app_slug_of,
    check_callback_url,
    check_params,
    parse_prefer_wait,
)
from models.catalog import App, Catalog, parse_catalog
from models.errors import ApiError

SLACK_BASE = "https://slack.com/api"
SLACK_HOSTS = ["slack.com"]


@pytest.fixture
def slack(catalog: Catalog) -> App:
    app = catalog.get("slack")
    assert app is not None
    return app


MAX_TIMEOUT_S = 90.0


def _check(app: App, **params: Any) -> CheckedParams:
    params.setdefault("method", "GET")
    params.setdefault("url", "https://slack.com/api/conversations.list")
    return check_params(PassthroughParams(**params), app, SLACK_BASE, SLACK_HOSTS, MAX_TIMEOUT_S)


def _problems(app: App, **params: Any) -> dict[str, str]:
    with pytest.raises(ApiError) as err:
        _check(app, **params)
    assert err.value.status_code == 400
    assert err.value.error == "invalid_params"
    return {d.field: d.message for d in err.value.details}


# --- method --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "method"),
    [("get", "GET"), ("Post", "POST"), ("PUT", "PUT"), ("patch", "PATCH"), ("delete", "DELETE")],
)
def test_method_is_upper_cased(slack: App, given: str, method: str) -> None:
    assert _check(slack, method=given).method == method


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "FETCH", "", "G ET"])
def test_unknown_method_is_refused(slack: App, method: str) -> None:
    assert "method" in _problems(slack, method=method)


# --- url -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["conversations.list?limit=2", "/conversations.list?limit=2", "  conversations.list?limit=2 "],
)
def test_relative_url_is_joined_to_base_url(slack: App, url: str) -> None:
    assert _check(slack, url=url).url == "https://slack.com/api/conversations.list?limit=2"


def test_relative_url_with_a_url_in_its_query_is_joined(slack: App) -> None:
    # Given a relative path whose query carries a URL (e.g. a link to unfurl or search)
    url = "search.messages?query=https://example.com/page"
    # When checked / Then it is still a path relative to the base URL
    assert _check(slack, url=url).url == f"{SLACK_BASE}/{url}"


def test_absolute_url_on_app_host_is_kept(slack: App) -> None:
    url = "https://slack.com/api/chat.postMessage?x=1"
    assert _check(slack, url=url).url == url


def test_fragment_is_dropped(slack: App) -> None:
    assert _check(slack, url="https://slack.com/api/a#frag").url == "https://slack.com/api/a"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.com/api/conversations.list",
        "https://slack.com.evil.com/api",
        "https://api.slack.com/api",
        "https://evilslack.com/",
        "//evil.com/api",
    ],
)
def test_url_on_another_host_is_refused(slack: App, url: str) -> None:
    assert "url" in _problems(slack, url=url)


def test_http_for_https_app_is_refused(slack: App) -> None:
    problems = _problems(slack, url="http://slack.com/api/conversations.list")
    assert "https" in problems["url"]


def test_http_is_allowed_for_http_app() -> None:
    app = parse_catalog(
        {
            "plain": {
                "name": "Plain",
                "base_url": "http://legacy.example/api",
                "allowed_hosts": ["legacy.example"],
                "auth": {"type": "bearer"},
            }
        },
        "test",
    )["plain"]
    checked = check_params(
        PassthroughParams(method="GET", url="x"),
        app,
        "http://legacy.example/api",
        ["legacy.example"],
    )
    assert checked.url == "http://legacy.example/api/x"


@pytest.mark.parametrize("url", ["ftp://slack.com/api", "file:///etc/passwd", "javascript://x"])
def test_other_schemes_are_refused(slack: App, url: str) -> None:
    assert "url" in _problems(slack, url=url)


@pytest.mark.parametrize(
    "url",
    [
        "https://user@slack.com/api/x",
        "https://user:pw@slack.com/api/x",
        "https://slack.com@evil.com/api/x",
        "https://:pw@slack.com/api/x",
    ],
)
def test_user_info_is_refused(slack: App, url: str) -> None:
    assert "url" in _problems(slack, url=url)


@pytest.mark.parametrize("url", ["", "   ", "https://slack.com:99999/api", "https://[::1/api"])
def test_empty_or_malformed_url_is_refused(slack: App, url: str) -> None:
    assert "url" in _problems(slack, url=url)


@pytest.mark.parametrize(
    "url",
    [
        "https://slack.com/api/x\r\nX-Injected: 1",
        "https://slack.com/api/x\ny",
        "conversations.list\r\nHost: evil.com",
    ],
)
def test_url_with_line_breaks_is_refused(slack: App, url: str) -> None:
    # A URL the HTTP client cannot send must be refused before the call is written
    assert "url" in _problems(slack, url=url)


def test_wildcard_host_matches_one_level(slack: App) -> None:
    hosts = ["*.example.com"]
    ok = check_params(
        PassthroughParams(method="GET", url="https://a.example.com/x"), slack, SLACK_BASE, hosts
    )
    assert ok.url == "https://a.example.com/x"
    with pytest.raises(ApiError):
        check_params(
            PassthroughParams(method="GET", url="https://a.b.example.com/x"),
            slack,
            SLACK_BASE,
            hosts,
        )


# --- headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Authorization", "authorization", "AUTHORIZATION", "AuThOrIzAtIoN"]
)
def test_authorization_header_is_refused(slack: App, name: str) -> None:
    problems = _problems(slack, headers={name: "Bearer forged"})
    assert f"headers.{name}" in problems


def test_custom_secret_header_is_refused_for_header_auth_app() -> None:
    app = parse_catalog(
        {
            "keyed": {
                "name": "Keyed",
                "base_url": "https://api.keyed.example",
                "allowed_hosts": ["api.keyed.example"],
                "auth": {"type": "header", "name": "X-API-Key"},
            }
        },
        "test",
    )["keyed"]
    with pytest.raises(ApiError) as err:
        check_params(
            PassthroughParams(method="GET", url="x", headers={"x-api-key": "forged"}),
            app,
            "https://api.keyed.example",
            ["api.keyed.example"],
        )
    assert err.value.details[0].field == "headers.x-api-key"


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Cookie",
        "Proxy-Authorization",
        "TE",
        "Upgrade",
    ],
)
def test_reserved_headers_are_refused(slack: App, name: str) -> None:
    assert f"headers.{name}" in _problems(slack, headers={name: "x"})


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\rb"])
def test_line_breaks_in_header_value_are_refused(slack: App, value: str) -> None:
    assert "headers.X-Custom" in _problems(slack, headers={"X-Custom": value})


@pytest.mark.parametrize("name", ["Bad Header", "X:Y", "", "X\nY", "Ünï"])
def test_invalid_header_name_is_refused(slack: App, name: str) -> None:
    assert f"headers.{name}" in _problems(slack, headers={name: "v"})


def test_ordinary_headers_are_kept(slack: App) -> None:
    headers = {"X-Trace": "1", "Accept": "text/csv", "Content-Type": "application/json"}
    assert _check(slack, headers=headers).headers == headers
    assert _check(slack).headers is None


def test_every_problem_is_listed(slack: App) -> None:
    problems = _problems(
        slack, method="TRACE", url="https://evil.com/x", headers={"Authorization": "x"}
    )
    assert {"method", "url", "headers.Authorization"} <= set(problems)


# --- Prefer: wait ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefer", "seconds"),
    [
        ("wait=5", 5.0),
        ("wait=0.5", 0.5),
        ("WAIT=7", 7.0),
        ('wait="3"', 3.0),
        ("respond-async, wait=10", 10.0),
        ("wait=120", 60.0),
        ("wait=60", 60.0),
        ("wait=0", 0.0),
    ],
)
def test_prefer_wait_is_parsed_and_capped(prefer: str, seconds: float) -> None:
    assert parse_prefer_wait(prefer, 60.0) == seconds


@pytest.mark.parametrize("prefer", [None, "", "respond-async", "return=minimal"])
def test_prefer_without_wait_is_none(prefer: str | None) -> None:
    assert parse_prefer_wait(prefer, 60.0) is None


@pytest.mark.parametrize("prefer", ["wait=soon", "wait=", "wait=-1", "wait=1s"])
def test_bad_prefer_wait_is_an_api_error(prefer: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_prefer_wait(prefer, 60.0)
    assert err.value.status_code == 400
    assert err.value.details[0].field == "Prefer"


# --- function names and callback ------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "slug"),
    [
        ("slack-passthrough-request", "slack"),
        ("google-sheets-passthrough-request", "google-sheets"),
        ("-passthrough-request", None),
        ("slack", None),
        ("slack-passthrough", None),
        ("", None),
    ],
)
def test_app_slug_of(function: str, slug: str | None) -> None:
    assert app_slug_of(function) == slug


def test_callback_url() -> None:
    assert check_callback_url(None) is None
    assert check_callback_url("https://hooks.example.com/x") == "https://hooks.example.com/x"
    for bad in ("ftp://x", "/relative", "https://"):
        with pytest.raises(ApiError):
            check_callback_url(bad)
