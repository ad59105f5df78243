"""Checks a call must pass before anything is written."""

from __future__ import annotations

import re
from typing import Any

import pytest

from api.call_urls import check_callback_url, join_path, resolve_url
from api.prefer import Preference, parse_prefer, parse_wait
from api.schemas.calls import PassthroughParams
from api.validation import (
    MAX_HEADER_CHARS,
    MAX_HEADERS,
    CallLimits,
    CheckedParams,
    app_slug_of,
    check_params,
)
from models.catalog.apps import App, Catalog, parse_catalog
from models.errors import ApiError
from models.net.urls import MAX_CALLBACK_URL_CHARS, MAX_URL_CHARS

SLACK_BASE = "https://slack.com/api"
SLACK_HOSTS = ["slack.com"]


@pytest.fixture
def slack(catalog: Catalog) -> App:
    app = catalog.get("slack")
    assert app is not None
    return app


LIMITS = CallLimits(max_timeout_s=90.0, max_call_body_bytes=1000, allow_private_callbacks=False)


def _check(app: App, **params: Any) -> CheckedParams:
    params.setdefault("method", "GET")
    params.setdefault("url", "https://slack.com/api/conversations.list")
    return check_params(PassthroughParams(**params), app, SLACK_BASE, SLACK_HOSTS, LIMITS)


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
        LIMITS,
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
        PassthroughParams(method="GET", url="https://a.example.com/x"),
        slack,
        SLACK_BASE,
        hosts,
        LIMITS,
    )
    assert ok.url == "https://a.example.com/x"
    with pytest.raises(ApiError):
        check_params(
            PassthroughParams(method="GET", url="https://a.b.example.com/x"),
            slack,
            SLACK_BASE,
            hosts,
            LIMITS,
        )


# --- url resolution (DESIGN: "a call's url") ---------------------------------------------------

SLACK_LIST = "https://slack.com/api/conversations.list"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        # a path is joined to the base URL; one that starts with its path is not doubled
        ("conversations.list", SLACK_LIST),
        ("/conversations.list", SLACK_LIST),
        ("/api/conversations.list", SLACK_LIST),
        ("/api/conversations.list?limit=2", SLACK_LIST + "?limit=2"),
        ("/api", "https://slack.com/api"),
        ("/api?x=1", "https://slack.com/api?x=1"),
        ("/apiary", "https://slack.com/api/apiary"),
        ("api/conversations.list", "https://slack.com/api/api/conversations.list"),
        ("?x=1", "https://slack.com/api/?x=1"),
        # absolute URLs on the app's hosts
        (SLACK_LIST, SLACK_LIST),
        ("https://SLACK.com:443/api/conversations.list", SLACK_LIST),
        ("https://slack.com/other", "https://slack.com/other"),
        # stored normalized, so path rules cannot be dodged
        ("https://slack.com/api/x/../conversations.list", SLACK_LIST),
        ("/api/%63onversations.list", SLACK_LIST),
        ("conversations.list#frag", SLACK_LIST),
        ("/api/./conversations.list", SLACK_LIST),
    ],
)
def test_a_call_url_resolves_as_the_design_says(given: str, stored: str) -> None:
    assert resolve_url(given, SLACK_BASE, SLACK_HOSTS) == stored


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("slack.com/api/conversations.list", "https://slack.com/api/conversations.list"),
        ("SLACK.com/api/x", "no scheme"),
        ("slack.com:443/api/x", "no scheme"),
        ("https://slack.com:8443/api/x", "port 8443"),
        ("https://slack.com:80/api/x", "port 80"),
        ("https://slack.com:0/api/x", "port"),
        ("https://slack.com:abc/api/x", "valid URL"),
        ("https://[::1/api", "valid URL"),
        ("http://slack.com/api/x", "https"),
        ("https://evil.com/api/x", "not one of this app's hosts"),
        ("//evil.com/api", "//host"),
        ("https://user:pw@slack.com/api/x", "user info"),
        ("https://slack.com@evil.com/api", "user info"),
        ("slack.com", "write https://slack.com,"),
        ("", "required"),
        ("x" * (MAX_URL_CHARS + 1), f"at most {MAX_URL_CHARS}"),
        ("/" + "a" * MAX_URL_CHARS, f"at most {MAX_URL_CHARS}"),
    ],
)
def test_a_call_url_that_cannot_be_resolved_says_why(given: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_url(given, SLACK_BASE, SLACK_HOSTS)


@pytest.mark.parametrize(
    ("base", "path", "joined"),
    [
        ("https://slack.com/api", "x", "https://slack.com/api/x"),
        ("https://slack.com/api/", "/x", "https://slack.com/api/x"),
        ("https://api.hubspot.com", "/crm/v3/objects", "https://api.hubspot.com/crm/v3/objects"),
        ("https://api.hubspot.com", "crm/v3", "https://api.hubspot.com/crm/v3"),
        ("https://a.zendesk.com/api/v2", "/api/v2/tickets", "https://a.zendesk.com/api/v2/tickets"),
        (
            "https://a.zendesk.com/api/v2",
            "/api/tickets",
            "https://a.zendesk.com/api/v2/api/tickets",
        ),
        (
            "https://a.zendesk.com/api/v2",
            "tickets?q=/api/v2",
            "https://a.zendesk.com/api/v2/tickets?q=/api/v2",
        ),
    ],
)
def test_join_path(base: str, path: str, joined: str) -> None:
    assert join_path(base, path) == joined


@pytest.mark.parametrize(
    ("base", "url", "ok"),
    [
        ("https://api.example.com", "https://api.example.com/x", True),
        ("https://api.example.com", "https://api.example.com:443/x", True),
        ("https://api.example.com", "https://api.example.com:8443/x", False),
        ("https://api.example.com:8443", "https://api.example.com:8443/x", True),
        ("https://api.example.com:8443", "https://api.example.com/x", True),
        ("http://legacy.example", "http://legacy.example:80/x", True),
        ("http://legacy.example:8080/api", "http://legacy.example:8080/x", True),
        ("http://legacy.example:8080/api", "http://legacy.example:9090/x", False),
        ("http://legacy.example:8080/api", "https://legacy.example/x", True),
    ],
)
def test_a_call_url_uses_only_the_apps_ports(base: str, url: str, ok: bool) -> None:
    hosts = [base.split("/")[2].split(":")[0]]
    if ok:
        resolve_url(url, base, hosts)
    else:
        with pytest.raises(ValueError, match="port"):
            resolve_url(url, base, hosts)


def test_a_scheme_less_host_is_only_suspected_for_the_apps_own_hosts() -> None:
    # A path whose first segment merely has a dot is a path
    assert resolve_url("files.upload", SLACK_BASE, SLACK_HOSTS) == f"{SLACK_BASE}/files.upload"
    assert resolve_url("evil.com/x", SLACK_BASE, SLACK_HOSTS) == f"{SLACK_BASE}/evil.com/x"


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
            LIMITS,
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


def test_at_most_50_headers(slack: App) -> None:
    ok = {f"X-H{i}": "v" for i in range(MAX_HEADERS)}
    assert _check(slack, headers=ok).headers == ok
    problems = _problems(slack, headers={**ok, "X-One-More": "v"})
    assert "at most 50" in problems["headers"]


def test_header_names_and_values_have_a_length_limit(slack: App) -> None:
    long = "x" * (MAX_HEADER_CHARS + 1)
    assert "longer than" in _problems(slack, headers={"X-" + long: "v"})["headers"]
    assert "at most" in _problems(slack, headers={"X-Long": long})["headers.X-Long"]
    fits = "x" * MAX_HEADER_CHARS
    assert _check(slack, headers={"X-Long": fits}).headers == {"X-Long": fits}


@pytest.mark.parametrize("value", ["a\x00b", "a\x01", "a\x1fb", "\x7f"])
def test_control_characters_in_header_values_are_refused(slack: App, value: str) -> None:
    assert "headers.X-C" in _problems(slack, headers={"X-C": value})


@pytest.mark.parametrize("value", ["caf\u00e9", "\u2603", "a\u2028b", "\U0001f600"])
def test_a_header_value_that_is_not_ascii_is_refused(slack: App, value: str) -> None:
    # (the worker's HTTP client sends header values as ASCII: accepted, the call could only
    # fail, under another field's name)
    assert _problems(slack, headers={"X-N": value}) == {
        "headers.X-N": "must be ASCII: percent-encode other characters"
    }


def test_a_tab_in_a_header_value_is_fine(slack: App) -> None:
    assert _check(slack, headers={"X-T": "a\tb"}).headers == {"X-T": "a\tb"}


# --- body --------------------------------------------------------------------------------------


def test_the_body_is_bounded_by_its_json_size(slack: App) -> None:
    # Given PASSTHRU_MAX_CALL_BODY_BYTES=1000 (LIMITS)
    fits = {"text": "x" * 980}  # {"text":"..."} is 991 bytes
    assert _check(slack, method="POST", body=fits)
    problems = _problems(slack, method="POST", body={"text": "x" * 1000})
    assert "1011 bytes" in problems["body"]
    assert "PASSTHRU_MAX_CALL_BODY_BYTES" in problems["body"]


# --- Prefer and wait ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefer", "seconds"),
    [
        ("wait=5", 5.0),
        ("wait=0.5", 0.5),
        ("WAIT=7", 7.0),
        ('wait="3"', 3.0),
        ("respond-async, wait=10", 10.0),
        ("wait=60", 60.0),
        ("wait=0", 0.0),
        ("return=minimal, wait=2", 2.0),
    ],
)
def test_prefer_wait_is_parsed(prefer: str, seconds: float) -> None:
    assert parse_prefer(prefer, 60.0).wait_s == seconds


def test_what_is_honoured_is_capped_by_the_operator() -> None:
    # Given PASSTHRU_MAX_WAIT_S=20, a caller asking for 45 s is served 20 s
    preference = parse_prefer("wait=45", 20.0)
    assert preference.wait_s == 20.0
    assert preference.applied == "wait=20"
    assert parse_wait("45", "wait", 20.0) == 20.0


@pytest.mark.parametrize("prefer", [None, "", "return=minimal", "handling=lenient"])
def test_prefer_without_wait_asks_for_nothing(prefer: str | None) -> None:
    assert parse_prefer(prefer, 60.0) == Preference()
    assert Preference().applied is None


def test_respond_async_is_recognised() -> None:
    preference = parse_prefer("respond-async", 60.0)
    assert preference == Preference(None, respond_async=True)
    assert preference.applied == "respond-async"


@pytest.mark.parametrize(
    "value", ["soon", "", "-1", "1s", "nan", "NaN", "inf", "-inf", "61", "60.5", "1e9", "abc"]
)
def test_a_wait_that_is_not_a_finite_number_from_0_to_60_is_a_400(value: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_prefer(f"wait={value}", 60.0)
    assert err.value.status_code == 400
    assert err.value.details[0].field == "Prefer"
    with pytest.raises(ApiError) as err:
        parse_wait(value, "wait", 60.0)
    assert err.value.details[0].field == "wait"


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
    assert check_callback_url(None, allow_private=False) is None
    assert (
        check_callback_url("https://hooks.example.com/x", allow_private=False)
        == "https://hooks.example.com/x"
    )
    assert check_callback_url("http://hooks.example.com:8080/x?a=1", allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "/relative",
        "https://",
        "http://[::1",
        "https://hooks.example.com:abc/x",
        "https://hooks.example.com:0/x",
        "https://hooks.example.com:65536/x",
        "https://user:pw@hooks.example.com/x",
        "https://hooks example.com/x",
        "https://hooks.example.com/\x00",
        "https://" + "a" * MAX_CALLBACK_URL_CHARS + ".com/",
    ],
)
def test_a_bad_callback_url_is_a_400_never_a_500(url: str) -> None:
    with pytest.raises(ApiError) as err:
        check_callback_url(url, allow_private=False)
    assert err.value.status_code == 400
    assert err.value.details[0].field == "callback_url"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost:8080/hook",
        "http://api.localhost/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_a_private_callback_address_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(ApiError) as err:
        check_callback_url(url, field="url", allow_private=False)
    assert err.value.details[0].field == "url"
    assert "PASSTHRU_WEBHOOK_ALLOW_PRIVATE_NETWORKS" in err.value.details[0].message
    assert check_callback_url(url, allow_private=True) == url
