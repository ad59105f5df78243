"""A catalog entry's connection_config (labels, choices, defaults) and OAuth2 settings: how
they are checked, how they fill in the templates, what the API shows of them."""

from __future__ import annotations

from typing import Any

import pytest

from models.catalog.apps import App, Catalog, parse_catalog, with_oauth_clients
from models.errors import ConfigError

ZOHO: dict[str, Any] = {
    "name": "Zoho CRM",
    "category": "crm",
    "description": "Zoho CRM in the account's data centre.",
    "base_url": "https://www.zohoapis.{dc}/crm",
    "allowed_hosts": ["www.zohoapis.{dc}"],
    "auth": {"type": "header", "name": "Authorization", "prefix": "Zoho-oauthtoken "},
    "oauth2": {
        "authorize_url": "https://accounts.zoho.{dc}/oauth/v2/auth",
        "token_url": "https://accounts.zoho.{dc}/oauth/v2/token",
        "scopes": ["ZohoCRM.modules.ALL"],
        "scope_separator": ",",
        "authorize_params": {"access_type": "offline"},
    },
    "connection_config": {
        "dc": {"label": "Data centre", "choices": {"us": "com", "eu": "eu", "au": "com.au"}},
    },
}


def _app(entry: dict[str, Any], slug: str = "app") -> App:
    return parse_catalog({slug: entry}, "test")[slug]


def _with(**changes: Any) -> dict[str, Any]:
    return {**ZOHO, **changes}


def _config(**fields: Any) -> dict[str, Any]:
    return _with(connection_config=fields)


# --- choices and defaults fill in the templates ----------------------------------------------


def test_a_chosen_key_puts_its_text_in_every_template() -> None:
    # Given an entry whose data centre is a choice / When an account picks "au"
    app = _app(ZOHO)
    base, hosts = app.resolve({"dc": "au"})
    # Then the base URL, the hosts and both OAuth2 URLs use that choice's text
    assert base == "https://www.zohoapis.com.au/crm"
    assert hosts == ["www.zohoapis.com.au"]
    assert app.token_url_for({"dc": "AU"}) == "https://accounts.zoho.com.au/oauth/v2/token"
    assert app.authorize_url_for({"dc": "eu"}) == "https://accounts.zoho.eu/oauth/v2/auth"


@pytest.mark.parametrize("value", ["www.zohoapis.com", "com", "evil.com", "jp", "a/b"])
def test_a_value_that_is_not_a_key_is_refused_with_the_keys(value: str) -> None:
    with pytest.raises(ValueError, match=r"connection_config\.dc must be one of us, eu, au"):
        _app(ZOHO).resolve({"dc": value})


def test_without_a_default_a_choice_is_required() -> None:
    with pytest.raises(ValueError, match=r"connection_config\.dc is required"):
        _app(ZOHO).resolve({})


def test_a_missing_value_takes_the_default() -> None:
    # Given a default data centre / When an account (an older one) gives no config
    app = _app(_config(dc={"label": "Data centre", "choices": {"us": "com"}, "default": "us"}))
    # Then it resolves to the default, as accounts stored before the field existed must
    assert app.resolve(None) == ("https://www.zohoapis.com/crm", ["www.zohoapis.com"])
    assert app.resolve({"dc": ""})[0] == "https://www.zohoapis.com/crm"


def test_a_free_field_keeps_the_single_label_rule_and_takes_its_default() -> None:
    app = _app(
        {
            "name": "Zendesk",
            "base_url": "https://{subdomain}.zendesk.com/api/v2",
            "allowed_hosts": ["{subdomain}.zendesk.com"],
            "auth": {"type": "basic"},
            "connection_config": {"subdomain": {"label": "Zendesk subdomain", "default": "demo"}},
        }
    )
    assert app.resolve({"subdomain": "Acme"})[1] == ["acme.zendesk.com"]
    assert app.resolve({})[1] == ["demo.zendesk.com"]
    with pytest.raises(ValueError, match=r"connection_config\.subdomain must be a single DNS"):
        app.resolve({"subdomain": "evil.com/"})


# --- what an entry may declare ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (_config(dc={"label": "DC", "choices": {"us": "com"}}, other={"label": "x"}), "other"),
        (_config(dc={"label": "DC", "choices": {"us": "com"}, "default": "eu"}), "default"),
        (_config(dc={"label": "DC", "choices": {"u.s": "com"}}), "u.s"),
        (_config(dc={"label": "DC", "choices": {"US": "com"}}), "US"),
        (_config(dc={"label": "DC", "choices": {"us": "com/evil"}}), "com/evil"),
        (_config(dc={"label": "DC", "choices": {"us": "evil.com:8080"}}), "evil.com:8080"),
        (_config(dc={"label": "DC", "choices": {"us": "Com"}}), "Com"),
        (_config(dc={"label": "DC", "choices": {}}), "choices"),
        (_config(dc={"label": "", "choices": {"us": "com"}}), "label"),
        (_config(dc={"choices": {"us": "com"}}), "label"),
        (_config(dc={"label": "DC", "default": "a.b"}), "default"),
        (_config(dc={"label": "DC", "choices": {"us": "com"}, "surprise": 1}), "surprise"),
        (_with(category="other"), "category"),
        (_with(vendor="Google Inc"), "vendor"),
    ],
)
def test_a_bad_connection_config_or_category_is_refused(entry: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match="'app' is invalid") as err:
        _app(entry)
    assert words in str(err.value)


@pytest.mark.parametrize("field", ["token_url", "authorize_url"])
def test_oauth2_urls_must_be_https(field: str) -> None:
    oauth2 = {**ZOHO["oauth2"], field: "http://accounts.zoho.{dc}/oauth/v2/x"}
    with pytest.raises(ConfigError, match=f"oauth2.{field}"):
        _app(_with(oauth2=oauth2))


def test_an_authorize_url_template_the_base_url_does_not_have_is_refused() -> None:
    oauth2 = {**ZOHO["oauth2"], "authorize_url": "https://{tenant}.zoho.com/auth"}
    with pytest.raises(ConfigError, match=r"authorize_url uses \['tenant'\]"):
        _app(_with(oauth2=oauth2))


@pytest.mark.parametrize(
    ("oauth2", "field"),
    [
        ({"scope_separator": ";"}, "scope_separator"),
        ({"token_auth": "jwt"}, "token_auth"),
        ({"pkce": "maybe"}, "pkce"),
        ({"authorize_params": {"prompt": 1}}, "authorize_params"),
    ],
)
def test_oauth2_settings_are_checked(oauth2: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        _app(_with(oauth2={**ZOHO["oauth2"], **oauth2}))


# --- what the API shows -----------------------------------------------------------------------


def test_public_shows_each_field_with_label_choices_and_default() -> None:
    app = _app(
        {
            **ZOHO,
            "base_url": "https://www.zohoapis.{dc}/{org}/crm",
            "connection_config": {
                "dc": {
                    "label": "Data centre",
                    "choices": {"us": "com", "eu": "eu"},
                    "default": "us",
                }
            },
        }
    )
    assert app.public()["connection_config"] == [
        {
            "name": "dc",
            "label": "Data centre",
            "choices": ["us", "eu"],
            "default": "us",
            "required": False,
        },
        {"name": "org", "label": "org", "choices": None, "default": None, "required": True},
    ]


def test_public_shows_the_oauth2_settings_but_never_the_operators_client() -> None:
    # Given the operator's client on an app with full OAuth2 settings
    [app] = with_oauth_clients(
        Catalog({"app": _app(ZOHO)}),
        {"app": {"client_id": "the-client-id", "client_secret": "the-client-secret"}},
    )
    # Then the settings survive the merge, the secret is usable, and neither is shown
    assert app.oauth2 is not None
    assert app.oauth2.scopes == ["ZohoCRM.modules.ALL"]
    assert app.oauth2.client_secret is not None
    assert app.oauth2.client_secret.get_secret_value() == "the-client-secret"
    shown = app.public()["oauth2"]
    assert shown == {
        "grant": "authorization_code",
        "token_url": "https://accounts.zoho.{dc}/oauth/v2/token",
        "authorize_url": "https://accounts.zoho.{dc}/oauth/v2/auth",
        "scopes": ["ZohoCRM.modules.ALL"],
        "scope_separator": ",",
        "pkce": False,
        "authorize_params": {"access_type": "offline"},
        "token_auth": "body",
    }
    assert "the-client" not in repr(app.public())


# --- category and search ----------------------------------------------------------------------


def test_matching_filters_by_category_and_searches_slug_name_and_description() -> None:
    catalog = Catalog(
        {
            "zoho-crm": _app(ZOHO, "zoho-crm"),
            "mailer": _app(
                _with(name="Mailer", category="email", description="Sends CRM newsletters"),
                "mailer",
            ),
        }
    )
    assert [a.slug for a in catalog.matching("crm")] == ["zoho-crm"]
    assert [a.slug for a in catalog.matching(q="crm")] == ["mailer", "zoho-crm"]
    assert [a.slug for a in catalog.matching(q="MAILER")] == ["mailer"]
    assert [a.slug for a in catalog.matching(q="oho-c")] == ["zoho-crm"]
    assert [a.slug for a in catalog.matching("email", "zoho")] == []
    assert len(catalog.matching()) == 2
