"""`GET /apps` and `GET /apps/{slug}`: the catalog as callers see it, never a secret."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from models.catalog.apps import App, CredentialKind
from models.catalog.spec import AuthSpec, Category, RateLimitSpec, RetrySpec, TimeoutSpec


class OAuth2Out(BaseModel):
    """How an account is connected and refreshed; the operator's client id and secret are
    never shown."""

    grant: Literal["authorization_code", "client_credentials"]
    token_url: str
    authorize_url: str | None
    scopes: list[str]
    scope_separator: Literal[" ", ",", "+"]
    pkce: bool
    authorize_params: dict[str, str]
    token_auth: Literal["body", "basic"]


class ConfigFieldOut(BaseModel):
    """One value a connected account gives in its `connection_config` (`{subdomain}`)."""

    name: str
    label: str
    choices: list[str] | None  # the keys to pick from; None: a free single DNS label
    default: str | None  # taken when the account gives none
    required: bool  # no default: the account must give it


class AppOut(BaseModel):
    """An app as `App.public()` shows it."""

    slug: str
    name: str
    vendor: str | None  # apps of one vendor may share hosts
    category: Category | None
    base_url: str
    allowed_hosts: list[str]
    auth: AuthSpec
    default_headers: dict[str, str]
    rate_limits: list[RateLimitSpec]
    retry: RetrySpec
    timeouts: TimeoutSpec
    docs_url: str | None
    description: str | None
    oauth2: OAuth2Out | None
    credentials: list[CredentialKind]  # the credentials objects that fit its auth style
    connection_config: list[ConfigFieldOut]

    @classmethod
    def of(cls, app: App) -> AppOut:
        return cls.model_validate(app.public())


class AppList(BaseModel):
    apps: list[AppOut]
