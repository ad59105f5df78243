"""Credentials objects a caller may store for a connected account, checked against the app."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.catalog.apps import App, CredentialKind
from models.errors import ApiError, ErrorDetail, invalid

# A stored secret is at most this long, whoever sets it (a tenant, or a token endpoint).
MAX_SECRET_CHARS = 16 * 1024
# An OAuth2 client id is an identifier, not a token: far shorter.
MAX_CLIENT_ID_CHARS = 1024


def usable_token(value: object) -> TypeGuard[str]:
    """A value that can go into a header or a URL as is (a token, an API key): printable
    ASCII, no control characters or line breaks, at most MAX_SECRET_CHARS."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_SECRET_CHARS
        and value.isascii()
        and value.isprintable()
    )


def _token(value: str) -> str:
    if not usable_token(value):
        raise ValueError("must be printable ASCII: no control characters, no line breaks")
    return value


def _text(value: str) -> str:
    """A value sent only encoded (basic auth is base64): any text but control characters."""
    if not value.isprintable():
        raise ValueError("must not contain control characters or line breaks")
    return value


class _Creds(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OAuth2Credentials(_Creds):
    access_token: str = Field(min_length=1, max_length=MAX_SECRET_CHARS)
    refresh_token: str | None = Field(default=None, max_length=MAX_SECRET_CHARS)
    expires_at: float | None = None  # epoch seconds
    refreshed_at: float | None = None  # epoch seconds; set by passthru when it refreshes

    @field_validator("expires_at", mode="before")
    @classmethod
    def _epoch(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("expires_at must be ISO 8601 or epoch seconds") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)  # no zone given: UTC, not local time
            return moment.timestamp()
        return value

    @field_validator("access_token", "refresh_token")
    @classmethod
    def _tokens(cls, value: str | None) -> str | None:
        return None if value is None else _token(value)


class ApiKeyCredentials(_Creds):
    api_key: str = Field(min_length=1, max_length=MAX_SECRET_CHARS)

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: str) -> str:
        return _token(value)


class BasicCredentials(_Creds):
    username: str = Field(min_length=1, max_length=MAX_SECRET_CHARS)
    password: str = Field(max_length=MAX_SECRET_CHARS)

    @field_validator("username")
    @classmethod
    def _user(cls, value: str) -> str:
        if ":" in value:
            raise ValueError("must not contain ':' (basic auth joins the pair with one)")
        return _text(value)

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return _text(value)


class ClientCredentials(_Creds):
    """The end user's own OAuth2 client, for an app whose tokens come from the client
    credentials grant (RFC 6749 section 4.4): what a tenant stores."""

    type: Literal["client_credentials"]
    client_id: str = Field(min_length=1, max_length=MAX_CLIENT_ID_CHARS)
    client_secret: str = Field(min_length=1, max_length=MAX_SECRET_CHARS, repr=False)

    @field_validator("client_id", "client_secret")
    @classmethod
    def _client(cls, value: str) -> str:
        return _token(value)


class ClientToken(ClientCredentials):
    """ClientCredentials as stored, with the access token passthru last fetched for them
    (never from a tenant: `parse_credentials` takes ClientCredentials)."""

    access_token: str | None = Field(default=None, repr=False)
    expires_at: float | None = None  # epoch seconds
    refreshed_at: float | None = None  # epoch seconds: when passthru fetched it
    after_401: bool = False  # fetched because the upstream answered 401 to the one before


Credentials = OAuth2Credentials | ClientCredentials | ApiKeyCredentials | BasicCredentials

_KIND_OF_KEY: dict[str, CredentialKind] = {
    "access_token": "oauth2",
    "api_key": "api_key",
    "username": "basic",
}
_MODEL: dict[CredentialKind, type[_Creds]] = {
    "oauth2": OAuth2Credentials,
    "client_credentials": ClientCredentials,
    "api_key": ApiKeyCredentials,
    "basic": BasicCredentials,
}
_SHAPES = {
    "oauth2": "{access_token, refresh_token?, expires_at?}",
    "client_credentials": '{type: "client_credentials", client_id, client_secret}',
    "api_key": "{api_key}",
    "basic": "{username, password}",
}


def parse_credentials(app: App, raw: Any) -> Credentials:
    """The credentials object for `app`, or an ApiError saying which shape it expects."""
    expected = " or ".join(_SHAPES[k] for k in sorted(app.credential_kinds))
    if not isinstance(raw, dict):
        raise invalid("credentials", f"must be an object: {expected}")
    kind: CredentialKind | None = (
        "client_credentials"
        if raw.get("type") == "client_credentials"
        else next((k for key, k in _KIND_OF_KEY.items() if key in raw), None)
    )
    if kind is None or kind not in app.credential_kinds:
        raise invalid("credentials", f"{app.name} ({app.auth.type} auth) takes {expected}")
    try:
        return _MODEL[kind].model_validate(raw)  # type: ignore[return-value]
    except ValidationError as exc:
        raise ApiError(
            "invalid_params",
            [
                ErrorDetail(".".join(["credentials", *map(str, e["loc"])]), e["msg"])
                for e in exc.errors()
            ],
        ) from exc


def load_credentials(data: dict[str, Any]) -> Credentials:
    """Rebuild stored credentials as they were stored: they were checked when written, and
    an account stored under older, looser rules keeps working (a value no request can
    carry fails its call as `invalid_request`). Never validated again here: a validation
    error quotes the value, and these values are secrets."""
    if data.get("type") == "client_credentials":
        return ClientToken.model_construct(**data)
    if "access_token" in data:
        return OAuth2Credentials.model_construct(**data)
    if "api_key" in data:
        return ApiKeyCredentials.model_construct(**data)
    return BasicCredentials.model_construct(**data)
