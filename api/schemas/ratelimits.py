"""`GET /rate-limits`: where a tenant's calls stand against the apps' limits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class LimitUse(BaseModel):
    """One limit an app declares, as it stands for one account."""

    scope: Literal["app", "account", "tenant"]
    limit: int
    period_s: float
    path: str | None = Field(description="a regular expression on the URL path, if any")
    burst: int
    in_use: int = Field(description="slots taken from now on: calls booked ahead, burst included")
    next_free_in_ms: int = Field(description="how long a new call would wait for this limit")


class AccountLimits(BaseModel):
    app: str
    connected_account_id: str
    user_id: str
    paused_until: str | None = Field(description="ISO 8601, when the upstream asked for quiet")
    limits: list[LimitUse]


class LaneUse(BaseModel):
    in_use: int
    next_free_in_ms: int


class TenantCap(BaseModel):
    """The operator's cap on all of a tenant's calls (PASSTHRU_TENANT_RATE_LIMIT), per lane."""

    limit: int
    period_s: float
    burst: int
    lanes: dict[str, LaneUse]


class RateLimits(BaseModel):
    as_of: str = Field(description="ISO 8601, Redis' clock when the state was read")
    tenant_cap: TenantCap | None
    items: list[AccountLimits] = Field(
        description="of this page's accounts, those whose app declares limits or is paused"
    )
    next_cursor: str | None = Field(
        description="the `cursor` of the next page of accounts; null on the last page"
    )
