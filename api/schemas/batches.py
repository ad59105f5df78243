"""`POST /function-calls/batch` and `GET /batches/{id}`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.schemas.common import ErrorDetailOut, StrictIn


class BatchIn(StrictIn):
    """Up to 1,000 calls in the `POST /function-calls` form; each is validated alone."""

    calls: list[Any] = Field(
        max_length=1000,
        description="Each in the POST /function-calls form; each is checked alone, so one bad "
        "call is one rejected item",
        examples=[
            [
                {
                    "function": "slack-passthrough-request",
                    "params": {"method": "GET", "url": "conversations.list"},
                }
            ]
        ],
    )


class BatchAccepted(BaseModel):
    index: int
    id: str


class BatchRejected(BaseModel):
    index: int
    error: str
    error_details: list[ErrorDetailOut]


class BatchSubmitted(BaseModel):
    batch_id: str
    accepted: list[BatchAccepted]
    rejected: list[BatchRejected]


class BatchOut(BaseModel):
    id: str
    created_at: datetime
    accepted: int
    rejected: int
    counts: dict[str, int] = Field(description="calls per status")
    finished: int
    done: bool
