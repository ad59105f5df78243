"""The API's other resources as dataclasses: connected accounts, connect links, functions,
the webhook endpoint and deliveries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from passthru_client._types import Page, as_str, as_time, page_of


@dataclass(frozen=True)
class ConnectedAccount:
    """An end user's stored account for one app (its credentials are never shown)."""

    id: str
    app: str
    user_id: str
    status: str
    connection_config: dict[str, Any] | None
    created_at: datetime | None
    updated_at: datetime | None
    last_used_at: datetime | None
    source: str | None = None  # how it was connected: "api" or "connect_page"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConnectedAccount:
        return cls(
            id=str(data["id"]),
            app=str(data["app"]),
            user_id=str(data["user_id"]),
            status=str(data["status"]),
            connection_config=data.get("connection_config"),
            created_at=as_time(data.get("created_at")),
            updated_at=as_time(data.get("updated_at")),
            last_used_at=as_time(data.get("last_used_at")),
            source=data.get("source"),
        )


class AccountPage(Page[ConnectedAccount]):
    """One page of the connected accounts, newest first."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccountPage:
        return cls(*page_of(data, ConnectedAccount.from_dict))


@dataclass(frozen=True)
class ConnectSession:
    """A single-use link (`url`) to send an end user to, to connect an account; it works
    until `expires_at`."""

    id: str
    url: str
    expires_at: datetime | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConnectSession:
        return cls(id=str(data["id"]), url=str(data["url"]), expires_at=as_time(data["expires_at"]))


@dataclass(frozen=True)
class Function:
    """A function that can be invoked, with the JSON Schema of its `params`."""

    name: str
    app: str
    type: str
    description: str
    parameters: dict[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Function:
        return cls(
            name=str(data["name"]),
            app=str(data["app"]),
            type=str(data.get("type", "")),
            description=str(data.get("description", "")),
            parameters=dict(data.get("parameters") or {}),
        )


@dataclass(frozen=True)
class WebhookEndpoint:
    """The tenant's webhook endpoint: its default URL (None: each call names its own
    `callback_url`), whether it is enabled (a 410 answer disables it, with the reason), and
    `secret`, the `whsec_...` signing secret, which the API shows only once (the first
    `set_webhook_endpoint`, and each `rotate_webhook_secret`): else None."""

    url: str | None
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    updated_at: datetime | None
    secret: str | None = field(default=None, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WebhookEndpoint:
        return cls(
            url=as_str(data.get("url")),
            enabled=bool(data.get("enabled", False)),
            disabled_at=as_time(data.get("disabled_at")),
            disabled_reason=as_str(data.get("disabled_reason")),
            updated_at=as_time(data.get("updated_at")),
            secret=as_str(data.get("secret")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class DeliveryAttempt:
    """One attempt to deliver a webhook: the receiver's status code or the error, and the
    decision taken after it."""

    number: int
    started_at: datetime | None
    duration_ms: int | None
    status_code: int | None
    error: str | None
    decision: str
    url: str | None = None  # the URL it was for (None: it had none, or made before it was kept)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeliveryAttempt:
        status_code = data.get("status_code")
        return cls(
            number=int(data["number"]),
            started_at=as_time(data.get("started_at")),
            duration_ms=data.get("duration_ms"),
            status_code=None if status_code is None else int(status_code),
            error=data.get("error"),
            decision=str(data.get("decision", "")),
            url=data.get("url"),
        )


@dataclass(frozen=True)
class Delivery:
    """A webhook delivery of a call's event (`id` is its stable `webhook-id`): `status` is
    pending, delivering, succeeded or failed; `next_attempt_at` is set while pending."""

    id: str
    event: str
    url: str
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime | None
    finished_at: datetime | None
    attempts: list[DeliveryAttempt]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Delivery:
        return cls(
            id=str(data["id"]),
            event=str(data["event"]),
            url=str(data["url"]),
            status=str(data["status"]),
            attempt_count=int(data.get("attempt_count") or 0),
            next_attempt_at=as_time(data.get("next_attempt_at")),
            created_at=as_time(data.get("created_at")),
            finished_at=as_time(data.get("finished_at")),
            attempts=[DeliveryAttempt.from_dict(a) for a in data.get("attempts") or ()],
            raw=dict(data),
        )
