"""URL helpers: origins, host patterns, DNS labels."""

from __future__ import annotations

import pytest

from models.net.urls import (
    MAX_CALLBACK_URL_CHARS,
    after_origin,
    allowed_ports,
    host_matches,
    is_dns_label,
    limit_path,
    normalize_origin,
    normalize_url,
    origin_of,
    parse_http_url,
)


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://Slack.com/", "https://slack.com"),
        ("https://slack.com", "https://slack.com"),
        ("  http://127.0.0.1:9000  ", "http://127.0.0.1:9000"),
        ("HTTP://LOCALHOST:8080/", "http://localhost:8080"),
    ],
)
def test_normalize_origin(raw: str, origin: str) -> None:
    assert normalize_origin(raw) == origin


@pytest.mark.parametrize(
    "raw",
    [
        "slack.com",
        "ftp://slack.com",
        "https://",
        "https://slack.com/api",
        "https://slack.com/?a=1",
        "https://slack.com/#frag",
        "",
    ],
)
def test_normalize_origin_refuses_non_origins(raw: str) -> None:
    with pytest.raises(ValueError, match=r"origin|path"):
        normalize_origin(raw)


def test_origin_of_keeps_scheme_host_port_only() -> None:
    assert origin_of("https://Slack.com/api/x?y=1") == "https://slack.com"
    assert origin_of("http://127.0.0.1:9000/a") == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("host", "pattern", "expected"),
    [
        ("slack.com", "slack.com", True),
        ("SLACK.com", "slack.com", True),
        ("slack.com.", "slack.com", True),
        ("api.slack.com", "slack.com", False),
        ("evilslack.com", "slack.com", False),
        ("a.example.com", "*.example.com", True),
        ("A.Example.com", "*.example.com", True),
        ("example.com", "*.example.com", False),
        ("a.b.example.com", "*.example.com", False),
        ("evil.com", "*.example.com", False),
        ("evilexample.com", "*.example.com", False),
        (".example.com", "*.example.com", False),
        ("a.example.com.evil.com", "*.example.com", False),
        ("", "*.example.com", False),
        ("", "slack.com", False),
    ],
)
def test_host_matches(host: str, pattern: str, expected: bool) -> None:
    assert host_matches(host, pattern) is expected


@pytest.mark.parametrize("value", ["acme", "a", "acme-corp", "ACME", "a1", "1a", "a" * 63])
def test_dns_label_accepted(value: str) -> None:
    assert is_dns_label(value)


@pytest.mark.parametrize(
    "value",
    ["", "evil.com", "a/b", "a@b", "a:1", "-a", "a-", "a_b", "a b", "a" * 64, "a\n", "é"],
)
def test_dns_label_refused(value: str) -> None:
    assert not is_dns_label(value)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("http://[::1", "not a valid URL"),
        ("http://example.com:abc/", "not a valid URL"),
        ("http://example.com:0/", "port"),
        ("http://example.com:65536/", "port"),
        ("ftp://example.com/", "http"),
        ("example.com/hook", "http"),
        ("http:///hook", "host"),
        ("http://user:pw@example.com/", "user info"),
        ("http://exa mple.com/", "spaces or control"),
        ("http://example.com/\x00", "spaces or control"),
        ("http://[zz::1]/", "not a valid"),
        ("http://a%20b/", "not a valid host"),
        ("https://example.com/" + "a" * 3000, "at most 2048"),
    ],
)
def test_parse_http_url_refuses_what_the_worker_could_not_send(raw: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_http_url(raw, max_chars=MAX_CALLBACK_URL_CHARS)


def test_parse_http_url_gives_the_ascii_host_that_will_be_connected() -> None:
    url = parse_http_url("https://straße.example/hook")
    assert url.raw_host == b"xn--strae-oqa.example"
    assert parse_http_url("http://[::1]:8080/x").port == 8080
    assert parse_http_url("https://hooks.example.com/in?x=1").port is None


@pytest.mark.parametrize(
    ("raw", "normalized", "for_limits"),
    [
        (
            "https://slack.com/api/%63onversations.list",
            "https://slack.com/api/conversations.list",
            "/api/conversations.list",
        ),
        (
            "https://slack.com/api/chat/../conversations.list?limit=2",
            "https://slack.com/api/conversations.list?limit=2",
            "/api/conversations.list",
        ),
        ("https://slack.com/api/%2e%2e/admin", "https://slack.com/admin", "/admin"),
        ("https://slack.com/api/./x/.", "https://slack.com/api/x/", "/api/x/"),
        ("https://a.test/b/%2fc?q=%41", "https://a.test/b/%2Fc?q=%41", "/b//c"),
        ("https://a.test", "https://a.test/", "/"),
        ("https://a.test/../../x", "https://a.test/x", "/x"),
    ],
)
def test_normalize_url_and_the_path_rate_limits_match(
    raw: str, normalized: str, for_limits: str
) -> None:
    assert normalize_url(raw) == normalized
    assert limit_path(raw) == for_limits


def test_allowed_ports_are_443_and_80_only_for_http_apps() -> None:
    assert allowed_ports("https://slack.com/api") == {443}
    assert allowed_ports("http://legacy.example/api") == {80, 443}
    assert allowed_ports("https://api.example.com:8443/v1") == {443, 8443}


@pytest.mark.parametrize(
    "url",
    ["https://slack.com/api/x", "https://slack.com:443/api/x", "https://u:p@Slack.com/api/x"],
)
def test_one_origin_however_it_is_spelled(url: str) -> None:
    assert origin_of(url) == "https://slack.com"
    assert after_origin(url) == "/api/x"
    assert normalize_origin("https://slack.com:443") == "https://slack.com"
