"""`GET /apps` and `GET /apps/{slug}`: the catalog as callers see it, never a secret."""

from __future__ import annotations

from pydantic import BaseModel

from models.catalog.apps import (
    App,
    AuthSpec,
    CredentialKind,
    RateLimitSpec,
    RetrySpec,
    TimeoutSpec,
)


class OAuth2Out(BaseModel):
    """Where tokens are refreshed; the operator's client id and secret are never shown."""

    token_url: str


class AppOut(BaseModel):
    """An app as `App.public()` shows it."""

    slug: str
    name: str
    category: str
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
    connection_config: list[str]  # what each connected account must give (`{subdomain}`)

    @classmethod
    def of(cls, app: App) -> AppOut:
        return cls.model_validate(app.public())


class AppList(BaseModel):
    apps: list[AppOut]
