"""`/webhook-endpoint` and a call's webhook deliveries."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.schemas.common import StrictIn
from models.db.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from models.webhooks.states import DeliveryStatus


class EndpointIn(StrictIn):
    url: str | None


class WebhookEndpointOut(BaseModel):
    url: str | None
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    updated_at: datetime
    secret: str | None = Field(
        default=None,
        exclude_if=lambda secret: secret is None,
        description="The `whsec_` signing secret, present only when it was just made: it is "
        "shown once",
    )

    @classmethod
    def of(cls, endpoint: WebhookEndpoint, secret: str | None = None) -> WebhookEndpointOut:
        return cls(
            url=endpoint.url,
            enabled=endpoint.disabled_at is None,
            disabled_at=endpoint.disabled_at,
            disabled_reason=endpoint.disabled_reason,
            updated_at=endpoint.updated_at,
            secret=secret,
        )


class DeliveryAttemptOut(BaseModel):
    number: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    decision: str
    url: str | None = Field(
        description="the URL this attempt was for; null when it had none (no endpoint "
        "enabled) or it was made before attempts kept their URL"
    )

    @classmethod
    def of(cls, attempt: WebhookAttempt) -> DeliveryAttemptOut:
        return cls(
            number=attempt.number,
            started_at=attempt.started_at,
            duration_ms=attempt.duration_ms,
            status_code=attempt.status_code,
            error=attempt.error,
            decision=attempt.decision,
            url=attempt.url,
        )


class DeliveryOut(BaseModel):
    id: str
    event: str
    url: str = Field(
        description="the call's callback_url, or the webhook endpoint's URL as of the last "
        "attempt or redelivery: each attempt goes to the endpoint's URL at that moment"
    )
    status: str
    attempt_count: int
    next_attempt_at: datetime | None = Field(description="when a pending delivery goes next")
    created_at: datetime
    finished_at: datetime | None
    attempts: list[DeliveryAttemptOut]

    @classmethod
    def of(cls, delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
        return cls(
            id=delivery.id,
            event=delivery.event,
            url=delivery.url,
            status=delivery.status,
            attempt_count=delivery.attempt_count,
            next_attempt_at=delivery.next_attempt_at
            if delivery.status == DeliveryStatus.PENDING
            else None,
            created_at=delivery.created_at,
            finished_at=delivery.finished_at,
            attempts=[DeliveryAttemptOut.of(a) for a in attempts],
        )


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
