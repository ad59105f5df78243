"""The app catalog: which third-party APIs passthru can call, and how.

Built-in entries live in `models/apps.yaml`; an operator's PASSTHRU_APPS_FILE has the same
form (a mapping from slug to app) and replaces or adds whole entries.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from models.errors import ConfigError
from models.net.urls import is_dns_label

if TYPE_CHECKING:
    from models.settings import Settings

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
CredentialKind = Literal["oauth2", "api_key", "basic"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthSpec(_Strict):
    """How credentials go on the wire."""

    type: Literal["bearer", "header", "query", "basic"]
    name: str | None = None  # header name, for type=header
    prefix: str = ""  # header value prefix, for type=header ("Token ", "Bearer ")
    param: str | None = None  # query parameter, for type=query
    # basic only: an {api_key} credential is sent as the username (or password) with
    # `api_key_password` (or the username) as the other half.
    api_key_as: Literal["username", "password"] | None = None
    api_key_pair: str = ""

    @model_validator(mode="after")
    def _complete(self) -> AuthSpec:
        if self.type == "header" and not self.name:
            raise ValueError("auth type 'header' needs 'name'")
        if self.type == "query" and not self.param:
            raise ValueError("auth type 'query' needs 'param'")
        return self

    @property
    def secret_headers(self) -> frozenset[str]:
        """Lower-case names of headers that carry the secret: callers may not set them."""
        if self.type == "header" and self.name:
            return frozenset({self.name.lower(), "authorization"})
        return frozenset({"authorization"})


class OAuth2Spec(_Strict):
    token_url: str
    client_id: str | None = None
    client_secret: SecretStr | None = None


class RateLimitSpec(_Strict):
    scope: Literal["app", "account", "tenant"]
    limit: int = Field(gt=0)
    period_s: float = Field(gt=0)
    path: str | None = None  # a regular expression on the URL path
    burst: int | None = Field(default=None, gt=0)


# Bounds of a retry policy, whoever sets it (the catalog or a call).
MAX_ATTEMPTS_LIMIT = 10
RETRYABLE_STATUS = (400, 599)


def check_retry_statuses(codes: list[int] | None) -> list[int] | None:
    low, high = RETRYABLE_STATUS
    if codes is not None and any(not low <= c <= high for c in codes):
        raise ValueError(f"on_status holds HTTP statuses from {low} to {high}")
    return codes


class RetrySpec(_Strict):
    """Which answers to retry and how often (None: the operator's default), and which
    headers say how long to wait."""

    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT)
    on_status: list[int] | None = None
    after_header: str | None = "Retry-After"
    reset_header: str | None = None
    remaining_header: str | None = None
    reset_is: Literal["epoch", "seconds"] = "epoch"

    _statuses = field_validator("on_status")(check_retry_statuses)


class TimeoutSpec(_Strict):
    """Onward request timeouts in seconds (None: the operator's default). Whoever sets them,
    PASSTHRU_MAX_TIMEOUT_S caps them."""

    connect_s: float | None = Field(default=None, gt=0)
    read_s: float | None = Field(default=None, gt=0)
    total_s: float | None = Field(default=None, gt=0)


class App(_Strict):
    slug: str
    name: str
    category: str = "other"
    base_url: str
    allowed_hosts: list[str] = Field(min_length=1)
    auth: AuthSpec
    oauth2: OAuth2Spec | None = None
    default_headers: dict[str, str] = Field(default_factory=dict)
    rate_limits: list[RateLimitSpec] = Field(default_factory=list)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    timeouts: TimeoutSpec = Field(default_factory=TimeoutSpec)
    docs_url: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> App:
        if not SLUG.match(self.slug):
            raise ValueError(f"slug {self.slug!r} must be lower-case letters, digits and '-'")
        if not self.base_url.startswith(("https://", "http://")):
            raise ValueError("base_url must start with https:// or http://")
        extra = set(_fields(self.allowed_hosts)) - set(_fields([self.base_url]))
        if extra:
            raise ValueError(f"allowed_hosts use {sorted(extra)}, which base_url does not")
        if self.oauth2 is not None:
            extra = set(_fields([self.oauth2.token_url])) - set(_fields([self.base_url]))
            if extra:
                raise ValueError(f"oauth2.token_url uses {sorted(extra)}, which base_url does not")
        return self

    @property
    def template_fields(self) -> list[str]:
        """Names that each connected account must give in its connection_config."""
        return _fields([self.base_url, *self.allowed_hosts])

    @property
    def credential_kinds(self) -> frozenset[CredentialKind]:
        """Which credentials objects fit this app's auth style."""
        if self.oauth2 is not None:
            return frozenset({"oauth2"})
        if self.auth.type == "basic":
            return frozenset({"basic", "api_key"} if self.auth.api_key_as else {"basic"})
        if self.auth.type == "bearer":
            return frozenset({"api_key", "oauth2"})
        return frozenset({"api_key"})

    def resolve(self, config: dict[str, Any] | None) -> tuple[str, list[str]]:
        """(base_url, allowed_hosts) for one account; raises ValueError naming the bad field."""
        values = render_values(self.template_fields, config or {})
        base = self.base_url.format_map(values).rstrip("/")
        return base, [h.format_map(values).lower() for h in self.allowed_hosts]

    def token_url_for(self, config: dict[str, Any] | None) -> str:
        """The OAuth2 token URL for one account, its template filled in like base_url's
        (`https://{subdomain}.example.com/oauth/token`); raises ValueError naming the field."""
        assert self.oauth2 is not None
        template = self.oauth2.token_url
        return template.format_map(render_values(_fields([template]), config or {}))

    def public(self) -> dict[str, Any]:
        """What the API shows: never the operator's OAuth client secret."""
        data = self.model_dump(mode="json", exclude={"oauth2"})
        data["oauth2"] = {"token_url": self.oauth2.token_url} if self.oauth2 else None
        data["credentials"] = sorted(self.credential_kinds)
        data["connection_config"] = self.template_fields
        return data


def render_values(fields: list[str], config: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in fields:
        value = config.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"connection_config.{name} is required by this app")
        if not is_dns_label(value):
            raise ValueError(
                f"connection_config.{name} must be a single DNS label "
                "(letters, digits and '-', no '.', '/', '@' or ':')"
            )
        values[name] = value.lower()
    return values


def _fields(templates: list[str]) -> list[str]:
    names: list[str] = []
    for template in templates:
        for _, name, _, _ in string.Formatter().parse(template):
            if name and name not in names:
                names.append(name)
    return names


class Catalog:
    def __init__(self, apps: dict[str, App]) -> None:
        self._apps = dict(sorted(apps.items()))

    def get(self, slug: str) -> App | None:
        return self._apps.get(slug)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._apps.values())

    def __len__(self) -> int:
        return len(self._apps)


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


def load_catalog(apps_file: Path | None = None) -> Catalog:
    builtin = resources.files("models.catalog").joinpath("apps.yaml").read_text()
    apps = parse_catalog(yaml.safe_load(builtin), "built-in catalog")
    if apps_file is not None:
        try:
            text = Path(apps_file).read_text()
        except OSError as exc:
            raise ConfigError(f"PASSTHRU_APPS_FILE {apps_file}: cannot read it ({exc})") from exc
        try:
            extra = yaml.safe_load(text) or {}
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
        unknown = set(client) - {"client_id", "client_secret"}
        if unknown:
            raise ConfigError(f"PASSTHRU_OAUTH_CLIENTS.{slug}: unknown keys {sorted(unknown)}")
        oauth2 = OAuth2Spec(
            token_url=app.oauth2.token_url,
            client_id=client.get("client_id", app.oauth2.client_id),
            client_secret=client.get("client_secret")
            or (app.oauth2.client_secret.get_secret_value() if app.oauth2.client_secret else None),
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
