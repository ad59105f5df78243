"""The app catalog: which third-party APIs passthru can call, and how.

Built-in entries live in `models/catalog/apps.yaml`; an operator's PASSTHRU_APPS_FILE has
the same form (a mapping from slug to app) and replaces or adds whole entries. An entry's
parts are checked in `spec.py`, its `{field}` templates filled in by `templates.py`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, SecretStr, ValidationError, model_validator

from models.catalog.spec import (
    AuthSpec,
    Category,
    ConfigField,
    OAuth2Spec,
    RateLimitSpec,
    RetrySpec,
    Strict,
    TimeoutSpec,
)
from models.catalog.templates import render_values, samples, template_fields
from models.errors import ConfigError

if TYPE_CHECKING:
    from models.settings import Settings

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
CredentialKind = Literal["oauth2", "client_credentials", "api_key", "basic"]


class App(Strict):
    slug: str
    name: str
    # Apps of one vendor (several Google APIs) name it here: only they may share a host.
    vendor: str | None = None
    category: Category | None = None
    base_url: str
    allowed_hosts: list[str] = Field(min_length=1)
    auth: AuthSpec
    oauth2: OAuth2Spec | None = None
    connection_config: dict[str, ConfigField] = Field(default_factory=dict)
    default_headers: dict[str, str] = Field(default_factory=dict)
    rate_limits: list[RateLimitSpec] = Field(default_factory=list)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    timeouts: TimeoutSpec = Field(default_factory=TimeoutSpec)
    docs_url: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> App:
        for name, value in (("slug", self.slug), ("vendor", self.vendor or self.slug)):
            if not SLUG.match(value):
                raise ValueError(f"{name} {value!r} must be lower-case letters, digits and '-'")
        if not self.base_url.startswith(("https://", "http://")):
            raise ValueError("base_url must start with https:// or http://")
        base_fields = set(template_fields([self.base_url]))
        for where, templates in self._templates().items():
            extra = set(template_fields(templates)) - base_fields
            if extra:
                raise ValueError(f"{where} uses {sorted(extra)}, which base_url does not")
        unused = set(self.connection_config) - base_fields
        if unused:
            raise ValueError(f"connection_config describes {sorted(unused)}, which no URL uses")
        for config in samples(self.template_fields, self.connection_config):
            self._check_rendered(config)
        return self

    def _templates(self) -> dict[str, list[str]]:
        found = {"allowed_hosts": self.allowed_hosts}
        if self.oauth2 is not None:
            found["oauth2.token_url"] = [self.oauth2.token_url]
            found["oauth2.authorize_url"] = [self.oauth2.authorize_url or ""]
        return found

    def _check_rendered(self, config: dict[str, str]) -> None:
        """Filled in, the URLs name a plain host (no user info, port or stray characters)."""
        base, hosts = self.resolve(config)
        urls = [base]
        if self.oauth2 is not None:
            urls += [self.token_url_for(config), self.authorize_url_for(config) or ""]
        for url in filter(None, urls):
            if not _plain_host(url):
                raise ValueError(f"{url!r} (filled in for {config}) has no plain host")
        if any("/" in host or ":" in host or "@" in host for host in hosts):
            raise ValueError(f"allowed_hosts {hosts} (filled in for {config}) are not hosts")

    @property
    def template_fields(self) -> list[str]:
        """Names that each connected account gives in its connection_config (or leaves to
        the field's default)."""
        return template_fields([self.base_url, *self.allowed_hosts])

    @property
    def owner(self) -> str:
        """The vendor, or the app itself when it names none."""
        return self.vendor or self.slug

    @property
    def credential_kinds(self) -> frozenset[CredentialKind]:
        """Which credentials objects fit this app's auth style."""
        if self.oauth2 is not None:
            return frozenset({"client_credentials" if self.oauth2.client_credentials else "oauth2"})
        if self.auth.type == "basic":
            return frozenset({"basic", "api_key"} if self.auth.api_key_as else {"basic"})
        if self.auth.type == "bearer":
            return frozenset({"api_key", "oauth2"})
        return frozenset({"api_key"})

    def config_field(self, name: str) -> ConfigField:
        """How `name` is described: as the entry says, else a free value labelled by name."""
        return self.connection_config.get(name) or ConfigField(label=name)

    def _fill(self, template: str, config: dict[str, Any] | None) -> str:
        names = template_fields([template])
        return template.format_map(render_values(names, config or {}, self.connection_config))

    def resolve(self, config: dict[str, Any] | None) -> tuple[str, list[str]]:
        """(base_url, allowed_hosts) for one account; raises ValueError naming the bad field."""
        values = render_values(self.template_fields, config or {}, self.connection_config)
        base = self.base_url.format_map(values).rstrip("/")
        return base, [h.format_map(values).lower() for h in self.allowed_hosts]

    def token_url_for(self, config: dict[str, Any] | None) -> str:
        """The OAuth2 token URL for one account, its template filled in like base_url's
        (`https://{subdomain}.example.com/oauth/token`); raises ValueError naming the field."""
        assert self.oauth2 is not None
        return self._fill(self.oauth2.token_url, config)

    def authorize_url_for(self, config: dict[str, Any] | None) -> str | None:
        """The OAuth2 authorization URL for one account (None if the entry has none)."""
        assert self.oauth2 is not None
        url = self.oauth2.authorize_url
        return None if url is None else self._fill(url, config)

    def public(self) -> dict[str, Any]:
        """What the API shows: never the operator's OAuth client id or secret."""
        data = self.model_dump(mode="json", exclude={"oauth2", "connection_config"})
        data["oauth2"] = self.oauth2.public() if self.oauth2 else None
        data["credentials"] = sorted(self.credential_kinds)
        data["connection_config"] = [
            self.config_field(name).public(name) for name in self.template_fields
        ]
        return data


def _plain_host(url: str) -> bool:
    """The URL names a host, and perhaps a port (an operator's internal API may use one),
    with no user info or stray characters."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return False
    netloc = parts.netloc.lower()
    host = parts.hostname or ""
    return bool(host) and netloc in (host, f"{host}:{port}", f"[{host}]", f"[{host}]:{port}")


class Catalog:
    def __init__(self, apps: dict[str, App]) -> None:
        self._apps = dict(sorted(apps.items()))

    def get(self, slug: str) -> App | None:
        return self._apps.get(slug)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._apps.values())

    def __len__(self) -> int:
        return len(self._apps)

    def matching(self, category: str | None = None, q: str | None = None) -> list[App]:
        """The apps in `category` (any, if None) whose slug, name or description holds `q`,
        ignoring case (any, if None or empty)."""
        needle = (q or "").casefold()
        return [
            app
            for app in self._apps.values()
            if (category is None or app.category == category)
            and needle in "\n".join((app.slug, app.name, app.description or "")).casefold()
        ]


def parse_catalog(data: Any, source: str) -> dict[str, App]:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the catalog must be a mapping from app slug to app")
    apps: dict[str, App] = {}
    for slug, entry in data.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: app {slug!r} must be a mapping")
        try:
            apps[str(slug)] = App.model_validate({**entry, "slug": str(slug)})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"{source}: app {slug!r} is invalid: {problems}") from exc
    return apps


# libyaml's parser where PyYAML has it (it is in its wheels): the built-in catalog in 50 ms
# instead of 420, on every API, worker and command start.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 (a safe loader)


@lru_cache(maxsize=1)
def _builtin_apps() -> Mapping[str, App]:
    """The built-in catalog, read once per process (its apps are immutable)."""
    text = resources.files("models.catalog").joinpath("apps.yaml").read_text()
    return MappingProxyType(parse_catalog(_yaml(text), "built-in catalog"))


def load_catalog(apps_file: Path | None = None) -> Catalog:
    apps = dict(_builtin_apps())
    if apps_file is not None:
        try:
            text = Path(apps_file).read_text()
        except OSError as exc:
            raise ConfigError(f"PASSTHRU_APPS_FILE {apps_file}: cannot read it ({exc})") from exc
        try:
            extra = _yaml(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"PASSTHRU_APPS_FILE {apps_file}: not valid YAML ({exc})") from exc
        apps.update(parse_catalog(extra, f"PASSTHRU_APPS_FILE {apps_file}"))
    return Catalog(apps)


def with_oauth_clients(catalog: Catalog, clients: dict[str, dict[str, str]]) -> Catalog:
    """The operator's OAuth client ids and secrets (PASSTHRU_OAUTH_CLIENTS) put on their apps."""
    apps = {app.slug: app for app in catalog}
    for slug, client in clients.items():
        app = apps.get(slug)
        if app is None or app.oauth2 is None:
            raise ConfigError(f"PASSTHRU_OAUTH_CLIENTS: {slug!r} is not an OAuth2 app")
        if app.oauth2.client_credentials:
            raise ConfigError(
                f"PASSTHRU_OAUTH_CLIENTS: {slug!r} uses the client_credentials grant: each "
                "connected account holds its own client id and secret"
            )
        unknown = set(client) - {"client_id", "client_secret"}
        if unknown:
            raise ConfigError(f"PASSTHRU_OAUTH_CLIENTS.{slug}: unknown keys {sorted(unknown)}")
        secret = client.get("client_secret") or app.oauth2.client_secret
        oauth2 = app.oauth2.model_copy(
            update={
                "client_id": client.get("client_id", app.oauth2.client_id),
                "client_secret": SecretStr(secret) if isinstance(secret, str) else secret,
            }
        )
        apps[slug] = app.model_copy(update={"oauth2": oauth2})
    return Catalog(apps)


def catalog_for(settings: Settings) -> Catalog:
    """The built-in catalog, PASSTHRU_APPS_FILE over it, and the operator's OAuth clients."""
    return with_oauth_clients(load_catalog(settings.apps_file), settings.oauth_clients)


@lru_cache(maxsize=1)
def get_catalog() -> Catalog:
    """The catalog for the environment's settings (the worker, the CLI)."""
    from models.settings import get_settings

    return catalog_for(get_settings())
