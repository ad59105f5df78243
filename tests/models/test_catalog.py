"""The app catalog: parsing, template resolution, operator merge, what is made public."""

from __future__ import annotations

import fnmatch
import itertools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from models.catalog.apps import App, Catalog, load_catalog, parse_catalog
from models.catalog.spec import CATEGORIES
from models.catalog.templates import samples
from models.errors import ConfigError
from models.net.urls import host_matches


def _entry(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "Example",
        "base_url": "https://api.example.com/v1",
        "allowed_hosts": ["api.example.com"],
        "auth": {"type": "bearer"},
    }
    entry.update(overrides)
    return entry


def _one(slug: str = "example", **overrides: Any) -> App:
    return parse_catalog({slug: _entry(**overrides)}, "test")[slug]


@pytest.fixture
def zendesk() -> App:
    return parse_catalog(
        {
            "zendesk": {
                "name": "Zendesk",
                "base_url": "https://{subdomain}.zendesk.com/api/v2",
                "allowed_hosts": ["{subdomain}.zendesk.com"],
                "auth": {"type": "basic"},
            }
        },
        "inline",
    )["zendesk"]


# --- parsing -------------------------------------------------------------------------------


def test_valid_entry_parses_with_slug_from_key() -> None:
    # Given a minimal valid entry / When parsed
    app = _one("my-app")
    # Then the slug comes from the mapping key and defaults are filled in
    assert app.slug == "my-app"
    assert app.auth.type == "bearer"
    assert app.rate_limits == []
    assert app.default_headers == {}


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (_entry(auth={"type": "digest"}), "auth.type"),
        (_entry(auth={"type": "header"}), "auth"),
        (_entry(auth={"type": "query"}), "auth"),
        (_entry(base_url="ftp://api.example.com"), "base_url"),
        (_entry(allowed_hosts=[]), "allowed_hosts"),
        (_entry(rate_limits=[{"scope": "app", "limit": 0, "period_s": 1}]), "rate_limits.0.limit"),
        (
            _entry(rate_limits=[{"scope": "world", "limit": 1, "period_s": 1}]),
            "rate_limits.0.scope",
        ),
        (_entry(surprise=True), "surprise"),
        (
            {
                "base_url": "https://api.example.com",
                "allowed_hosts": ["a"],
                "auth": {"type": "bearer"},
            },
            "name",
        ),
    ],
)
def test_parse_error_names_app_and_field(entry: dict[str, Any], field: str) -> None:
    # Given an entry with one mistake / When parsed / Then ConfigError names the app and field
    with pytest.raises(ConfigError) as err:
        parse_catalog({"broken-app": entry}, "my-file.yaml")
    message = str(err.value)
    assert "broken-app" in message
    assert field in message
    assert "my-file.yaml" in message


def test_parse_error_for_template_host_not_in_base_url() -> None:
    with pytest.raises(ConfigError) as err:
        parse_catalog(
            {"tpl": _entry(allowed_hosts=["{tenant}.example.com"])},
            "src",
        )
    assert "tpl" in str(err.value)
    assert "tenant" in str(err.value)


def test_parse_error_for_a_token_url_template_the_base_url_does_not_have() -> None:
    with pytest.raises(ConfigError, match="token_url") as err:
        parse_catalog(
            {"tpl": _entry(oauth2={"token_url": "https://{region}.example.com/token"})}, "src"
        )
    assert "region" in str(err.value)


def test_a_token_url_template_is_filled_like_the_base_url() -> None:
    [app] = parse_catalog(
        {
            "tpl": _entry(
                base_url="https://{subdomain}.example.com/api",
                allowed_hosts=["{subdomain}.example.com"],
                oauth2={"token_url": "https://{subdomain}.example.com/oauth/token"},
            )
        },
        "src",
    ).values()
    assert app.token_url_for({"subdomain": "Acme"}) == "https://acme.example.com/oauth/token"
    with pytest.raises(ValueError, match="single DNS label"):
        app.token_url_for({"subdomain": "evil.com/"})


def test_parse_error_for_bad_slug() -> None:
    with pytest.raises(ConfigError) as err:
        parse_catalog({"Bad_Slug": _entry()}, "src")
    assert "Bad_Slug" in str(err.value)


def test_parse_refuses_non_mapping_catalog_and_entry() -> None:
    with pytest.raises(ConfigError):
        parse_catalog(["slack"], "src")
    with pytest.raises(ConfigError) as err:
        parse_catalog({"slack": "nope"}, "src")
    assert "slack" in str(err.value)


# --- templates -------------------------------------------------------------------------------


def test_resolve_fills_subdomain_template(zendesk: App) -> None:
    # Given an app templated on {subdomain} / When resolved for one account
    base, hosts = zendesk.resolve({"subdomain": "Acme"})
    # Then base URL and hosts use the (lower-cased) value
    assert base == "https://acme.zendesk.com/api/v2"
    assert hosts == ["acme.zendesk.com"]
    assert zendesk.template_fields == ["subdomain"]


def test_resolve_without_template_ignores_config() -> None:
    app = _one(base_url="https://api.example.com/v1/")
    assert app.resolve(None) == ("https://api.example.com/v1", ["api.example.com"])


@pytest.mark.parametrize("config", [None, {}, {"subdomain": ""}, {"subdomain": 7}, {"other": "x"}])
def test_resolve_requires_the_template_value(zendesk: App, config: dict[str, Any] | None) -> None:
    with pytest.raises(ValueError, match="subdomain"):
        zendesk.resolve(config)


@pytest.mark.parametrize(
    "value",
    [
        "evil.com",
        "acme.evil.com",
        "evil.com/",
        "a/b",
        "user@evil",
        "evil:8080",
        "acme.",
        "-acme",
        "acme-",
        "a b",
        "a" * 64,
        "acme#x",
        "acme?x",
        "acme\n",
    ],
)
def test_resolve_refuses_value_that_is_not_one_dns_label(zendesk: App, value: str) -> None:
    # Given a template value that would change the host / Then it is refused
    with pytest.raises(ValueError, match="subdomain"):
        zendesk.resolve({"subdomain": value})


# --- operator file -------------------------------------------------------------------------


def test_builtin_catalog_has_required_apps() -> None:
    catalog = load_catalog()
    for slug in ("demo", "slack", "pipedrive"):
        app = catalog.get(slug)
        assert app is not None
        assert app.slug == slug
    assert catalog.get("no-such-app") is None
    assert len(catalog) == len(list(catalog))


def test_apps_file_replaces_an_entry_and_adds_one(tmp_path: Path) -> None:
    # Given an operator file that redefines slack and adds a new app
    apps_file = tmp_path / "apps.yaml"
    apps_file.write_text(
        """
slack:
  name: Slack (sandbox)
  base_url: https://sandbox.slack.example/api
  allowed_hosts: [sandbox.slack.example]
  auth: {type: bearer}
acme-crm:
  name: Acme CRM
  base_url: https://api.acme-crm.example
  allowed_hosts: [api.acme-crm.example]
  auth: {type: query, param: token}
"""
    )
    builtin = load_catalog()
    # When merged
    catalog = load_catalog(apps_file)
    # Then slack is replaced as a whole entry, the new app exists, the rest is untouched
    slack = catalog.get("slack")
    assert slack is not None
    assert slack.name == "Slack (sandbox)"
    assert slack.allowed_hosts == ["sandbox.slack.example"]
    assert slack.oauth2 is None  # whole entry replaced, not merged field by field
    acme = catalog.get("acme-crm")
    assert acme is not None
    assert acme.auth.param == "token"
    assert catalog.get("pipedrive") == builtin.get("pipedrive")
    assert len(catalog) == len(builtin) + 1


def test_apps_file_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_catalog(tmp_path / "missing.yaml")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("slack: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_catalog(bad_yaml)
    bad_app = tmp_path / "bad-app.yaml"
    bad_app.write_text(
        "newapp:\n  name: X\n  base_url: https://x.example\n  auth: {type: bearer}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_catalog(bad_app)
    assert "newapp" in str(err.value)
    assert "allowed_hosts" in str(err.value)


def test_empty_apps_file_keeps_builtin(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert len(load_catalog(empty)) == len(load_catalog())


# --- credential kinds and public view ---------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "kinds"),
    [
        ({"auth": {"type": "bearer"}}, {"api_key", "oauth2"}),
        (
            {"auth": {"type": "bearer"}, "oauth2": {"token_url": "https://api.example.com/t"}},
            {"oauth2"},
        ),
        ({"auth": {"type": "header", "name": "X-Key"}}, {"api_key"}),
        ({"auth": {"type": "query", "param": "key"}}, {"api_key"}),
        ({"auth": {"type": "basic"}}, {"basic"}),
        ({"auth": {"type": "basic", "api_key_as": "username"}}, {"basic", "api_key"}),
    ],
)
def test_credential_kinds_per_auth_style(overrides: dict[str, Any], kinds: set[str]) -> None:
    assert set(_one(**overrides).credential_kinds) == kinds


def test_public_never_contains_client_secret() -> None:
    # Given an app whose operator configured an OAuth client secret
    app = _one(
        oauth2={
            "token_url": "https://api.example.com/oauth/token",
            "client_id": "client-123",
            "client_secret": "super-secret-value",
        }
    )
    # When made public
    public = app.public()
    # Then the secret (and the operator's client id) appear nowhere, but the OAuth2 settings do
    assert "super-secret-value" not in repr(public)
    assert "client-123" not in repr(public)
    assert public["oauth2"] == {
        "grant": "authorization_code",
        "token_url": "https://api.example.com/oauth/token",
        "authorize_url": None,
        "scopes": [],
        "scope_separator": " ",
        "pkce": False,
        "authorize_params": {},
        "token_auth": "body",
    }
    assert public["credentials"] == ["oauth2"]
    assert public["slug"] == "example"
    # and the secret is not leaked by the model's own repr either
    assert "super-secret-value" not in repr(app)


def test_public_lists_connection_config_fields(zendesk: App) -> None:
    public = zendesk.public()
    assert public["connection_config"] == [
        {
            "name": "subdomain",
            "label": "subdomain",
            "choices": None,
            "default": None,
            "required": True,
        }
    ]
    assert public["oauth2"] is None


def test_secret_headers_cover_custom_header_and_authorization() -> None:
    app = _one(auth={"type": "header", "name": "X-API-Key"})
    assert app.auth.secret_headers == {"x-api-key", "authorization"}
    assert _one().auth.secret_headers == {"authorization"}


def test_catalog_iterates_sorted_by_slug() -> None:
    apps = parse_catalog({"zeta": _entry(), "alpha": _entry()}, "src")
    assert [a.slug for a in Catalog(apps)] == ["alpha", "zeta"]


# --- the whole built-in catalog ------------------------------------------------------------

BUILTIN = [app for app in load_catalog() if app.slug != "demo"]
# An HTTP field name (RFC 9110 token): api_key is one, "X Key" is not.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# OAuth2 apps whose entry has no authorize_url yet (they predate it). This set may only
# shrink: an entry that gains its authorize_url leaves it, a new OAuth2 app never joins it.
# Apps of the client credentials grant have none by design, and are not counted.
WITHOUT_AUTHORIZE_URL = {"amazon-sp-api"}


def test_header_names_are_http_tokens() -> None:
    assert all(map(HEADER_NAME.match, ["X-API-Key", "api_key", "Authorization"]))
    assert not any(map(HEADER_NAME.match, ["X Key", "X-Key:", "", "K\u00e9y"]))


def test_the_catalog_covers_250_apps_in_the_fixed_categories() -> None:
    assert len(BUILTIN) >= 250
    assert len(set(CATEGORIES)) == len(CATEGORIES) == 18  # the list in docs/architecture.md
    assert {app.category for app in BUILTIN} <= set(CATEGORIES)


def test_oauth2_apps_without_an_authorize_url_are_only_the_known_ones() -> None:
    missing = {
        app.slug
        for app in BUILTIN
        if app.oauth2 and not app.oauth2.authorize_url and not app.oauth2.client_credentials
    }
    assert missing == WITHOUT_AUTHORIZE_URL


@pytest.mark.parametrize("app", BUILTIN, ids=lambda a: a.slug)
def test_every_entry_is_complete_and_consistent(app: App) -> None:
    # Real APIs over https only, with their documentation, in one of the fixed categories
    assert app.category in CATEGORIES
    assert app.base_url.startswith("https://")
    assert app.docs_url is not None
    assert app.docs_url.startswith("https://")
    assert app.description
    # For every choice of its connection_config, the base URL's host is one of the allowed
    # hosts, and no host pattern is broader than one label under a registrable domain
    for sample in samples(app.template_fields, app.connection_config):
        base_url, hosts = app.resolve(sample)
        host = urlsplit(base_url).hostname or ""
        assert any(host_matches(host, pattern) for pattern in hosts), (host, hosts)
        for pattern in hosts:
            assert pattern.count(".") >= 1
            assert not pattern.startswith("*.") or pattern.count(".") >= 2
        if app.oauth2 is not None:
            assert app.token_url_for(sample).startswith("https://")
            assert (app.authorize_url_for(sample) or "https://").startswith("https://")
    # Credentials: a style that can carry them, and no operator secret shipped in the
    # built-in file
    assert app.credential_kinds
    if app.auth.type == "header":
        assert app.auth.name is not None
        assert HEADER_NAME.match(app.auth.name)
    if app.oauth2 is not None:
        assert app.oauth2.client_secret is None
        assert app.oauth2.client_id is None
    for name in (app.retry.after_header, app.retry.reset_header, app.retry.remaining_header):
        assert name is None or HEADER_NAME.match(name)
    for limit in app.rate_limits:
        assert limit.limit > 0
        assert limit.period_s > 0
        if limit.path:
            re.compile(limit.path)
    # What the API shows carries no secret
    assert "client_secret" not in json.dumps(app.public())


# --- hosts: no two vendors claim one ------------------------------------------------------


def host_claims(app: App) -> set[str]:
    """The hosts an app can send to, as globs: a free template field is any one label (`*`),
    a field with choices is each of its choices' text."""
    claims: set[str] = set()
    options = [
        list((app.config_field(name).choices or {"": "*"}).values()) for name in app.template_fields
    ]
    for combination in itertools.product(*options):
        values = dict(zip(app.template_fields, combination, strict=True))
        claims.update(host.format_map(values).lower() for host in app.allowed_hosts)
    return claims


def overlap(a: str, b: str) -> bool:
    """Whether two host globs can name the same host (label by label; `*` in a label is any
    text, so `api-*.sendbird.com` and `*.sendbird.com` overlap)."""
    left, right = a.split("."), b.split(".")
    return len(left) == len(right) and all(
        fnmatch.fnmatchcase(x, y) or fnmatch.fnmatchcase(y, x)
        for x, y in zip(left, right, strict=True)
    )


def test_host_globs_overlap_label_by_label() -> None:
    assert overlap("{s}.zendesk.com".format(s="*"), "acme.zendesk.com")
    assert overlap("www.googleapis.com", "www.googleapis.com")
    assert not overlap("*.zendesk.com", "zendesk.com")
    assert not overlap("api.example.com", "api.example.org")
    assert overlap("api-*.sendbird.com", "*.sendbird.com")


def test_host_claims_expand_choices_and_free_fields() -> None:
    app = _one(
        base_url="https://{region}/api/{tenant}",
        allowed_hosts=["{region}"],
        connection_config={"region": {"label": "Region", "choices": {"us": "a.example.com"}}},
    )
    assert host_claims(app) == {"a.example.com"}
    assert host_claims(_one(base_url="https://{s}.x.com", allowed_hosts=["{s}.x.com"])) == {
        "*.x.com"
    }


def clashes(apps: list[App]) -> set[tuple[str, str, str, str]]:
    """(app, app, host, host) for every two apps of different vendors whose hosts overlap."""
    claims = [(app, host) for app in apps for host in host_claims(app)]
    return {
        (a.slug, b.slug, host_a, host_b)
        for (a, host_a), (b, host_b) in itertools.combinations(claims, 2)
        if a.owner != b.owner and overlap(host_a, host_b)
    }


def test_apps_of_different_vendors_on_one_host_clash() -> None:
    drive = _one("drive", base_url="https://www.example.com/drive", vendor="example")
    mail = _one("mail", base_url="https://www.example.com/mail", vendor="example")
    other = _one("other", base_url="https://{s}.example.com", allowed_hosts=["{s}.example.com"])
    assert clashes([drive, mail]) == set()
    assert clashes([drive, other]) == {("drive", "other", "api.example.com", "*.example.com")}
    assert clashes([drive, _one("copy")]) == {
        ("drive", "copy", "api.example.com", "api.example.com")
    }


def test_no_two_vendors_claim_the_same_host() -> None:
    # Apps may share a host only when they name the same vendor (`vendor: google`).
    assert clashes(BUILTIN) == set()


def test_a_base_url_may_name_a_port_but_never_user_info() -> None:
    # An operator's internal API on its own port loads
    app = _one(base_url="http://localhost:8443/api", allowed_hosts=["localhost"])
    assert app.resolve(None)[0] == "http://localhost:8443/api"
    # User info or a port that is not one is refused, naming the URL
    for url in ("https://user:pw@api.example.com/v1", "https://api.example.com:99999/v1"):
        with pytest.raises(ConfigError, match="no plain host"):
            _one(base_url=url)
