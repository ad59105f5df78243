"""URL helpers: origins, host patterns, DNS labels."""

from __future__ import annotations

import pytest

from models.urls import host_matches, is_dns_label, normalize_origin, origin_of


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
