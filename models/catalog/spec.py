"""The pieces of a catalog entry, each checked on its own: how credentials go on the wire,
how an OAuth2 account is connected and refreshed, rate limits, retry hints, timeouts, and the
fields a connected account fills into the entry's templates."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from models.net.urls import is_dns_label, is_host_text

# Every app is in one of these (docs/apps.md counts them).
Category = Literal[
    "ai",
    "analytics",
    "chat",
    "crm",
    "devtools",
    "documents",
    "ecommerce",
    "email",
    "finance",
    "hr",
    "identity",
    "marketing",
    "productivity",
    "project-management",
    "sales-engagement",
    "storage",
    "telephony",
    "ticketing",
]
CATEGORIES: tuple[str, ...] = get_args(Category)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthSpec(Strict):
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


def check_https_template(url: str | None) -> str | None:
    """An OAuth2 endpoint: https, its host possibly templated like base_url's."""
    if url is not None and not url.startswith("https://"):
        raise ValueError("OAuth2 endpoints must be https:// URLs")
    return url


class OAuth2Spec(Strict):
    """Connecting an account (authorize_url, scopes, PKCE) and refreshing its tokens
    (token_url, token_auth); the operator's client id and secret come from its own settings.

    With `grant: client_credentials` (RFC 6749 section 4.4) each account holds its own
    company's client id and secret, and passthru asks token_url for the access tokens
    itself (sending `scopes`, the client as `token_auth` says): nothing to authorize, no
    PKCE, no operator client."""

    grant: Literal["authorization_code", "client_credentials"] = "authorization_code"
    token_url: str
    authorize_url: str | None = None
    scopes: list[str] = Field(default_factory=list)
    scope_separator: Literal[" ", ",", "+"] = " "
    pkce: bool = False
    authorize_params: dict[str, str] = Field(default_factory=dict)
    # How the token endpoint wants the client's id and secret: in the form, or HTTP Basic.
    token_auth: Literal["body", "basic"] = "body"  # noqa: S105 - a style, not a secret
    client_id: str | None = None
    client_secret: SecretStr | None = None

    _https = field_validator("token_url", "authorize_url")(check_https_template)

    @model_validator(mode="after")
    def _grant(self) -> OAuth2Spec:
        if self.grant == "client_credentials":
            given = [
                name
                for name in ("authorize_url", "pkce", "authorize_params", "client_id")
                if getattr(self, name)
            ] + (["client_secret"] if self.client_secret is not None else [])
            if given:
                raise ValueError(
                    f"grant client_credentials takes no {', '.join(given)}: nothing is "
                    "authorized, and each account holds its own client id and secret"
                )
        return self

    @property
    def client_credentials(self) -> bool:
        """Whether each account holds its own client, and passthru fetches the tokens."""
        return self.grant == "client_credentials"

    def public(self) -> dict[str, object]:
        """Everything but the operator's client id and secret."""
        return self.model_dump(mode="json", exclude={"client_id", "client_secret"})


class RateLimitSpec(Strict):
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


class RetrySpec(Strict):
    """Which answers to retry and how often (None: the operator's default), and which
    headers say how long to wait."""

    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT)
    on_status: list[int] | None = None
    after_header: str | None = "Retry-After"
    reset_header: str | None = None
    remaining_header: str | None = None
    # epoch: a Unix time in seconds; epoch_ms: in milliseconds (Linear); seconds: from now
    reset_is: Literal["epoch", "epoch_ms", "seconds"] = "epoch"

    _statuses = field_validator("on_status")(check_retry_statuses)


class TimeoutSpec(Strict):
    """Onward request timeouts in seconds (None: the operator's default). Whoever sets them,
    PASSTHRU_MAX_TIMEOUT_S caps them."""

    connect_s: float | None = Field(default=None, gt=0)
    read_s: float | None = Field(default=None, gt=0)
    total_s: float | None = Field(default=None, gt=0)


class ConfigField(Strict):
    """One `{field}` of the entry's templates, as a connected account fills it in: a free
    single DNS label, or one of `choices` (a short key the user picks -> the text the
    catalog puts in the template, such as a data centre's host)."""

    label: str = Field(min_length=1, max_length=120)
    choices: dict[str, str] | None = Field(default=None, min_length=1)
    default: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ConfigField:
        for key, text in (self.choices or {}).items():
            if not is_dns_label(key) or key != key.lower():
                raise ValueError(f"choice {key!r}: a key is one lower-case DNS label")
            if not is_host_text(text):
                raise ValueError(
                    f"choice {key!r}: {text!r} is not lower-case DNS labels joined by '.'"
                )
        if self.default is not None:
            if self.choices is not None and self.default not in self.choices:
                raise ValueError(f"default {self.default!r} is not one of the choices")
            if self.choices is None and not is_dns_label(self.default):
                raise ValueError(f"default {self.default!r} is not one DNS label")
        return self

    def public(self, name: str) -> dict[str, object]:
        return {
            "name": name,
            "label": self.label,
            "choices": list(self.choices) if self.choices is not None else None,
            "default": self.default,
            "required": self.default is None,
        }
