"""The shape of `GET /v1/analytics` (docs/API.md): the OpenAPI document is generated from it."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RevenueRow(_Model):
    """Paid grants of the period, gross (refunds show as revocations, not here)."""

    source: str = Field(description="purchase or top_up")
    pack: str | None = Field(description="the pack bought; null for amounts and top-ups")
    currency: str
    purchases: int
    amount_cents: int
    credits: int


class OutstandingRow(_Model):
    """Credits outstanding now, per credit type: `available = paid + granted - owed`."""

    credit_type: str
    available: int
    held: int
    paid: int = Field(description="unheld in paid lots (purchases, top-ups)")
    paid_held: int
    granted: int = Field(description="unheld in every other lot (allocations, trials, grants)")
    granted_held: int
    owed: int = Field(description="overdraft and refund debt")


class BreakageRow(_Model):
    """Credits that left their lots unspent in the period (docs/DOMAIN.md)."""

    credit_type: str
    expired: int
    forfeited: int


class Conversion(_Model):
    """Accounts opened in the period on a free plan, and how many of them converted (a paid
    grant, or a change to a plan with a price) within it."""

    started_free: int
    converted: int
    rate: float | None = Field(description="converted / started_free; null when none started")
    conversions: dict[str, int] = Field(
        description="conversions in the period (any cohort) by how: purchase, plan:NAME"
    )


class Refills(_Model):
    """Paid grants in the period per account that had any."""

    accounts: int
    refills: int
    per_account: float | None = Field(description="refills / accounts; null when none")
    most_per_account: int


class AnalyticsReport(_Model):
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    revenue: list[RevenueRow]
    outstanding: list[OutstandingRow]
    breakage: list[BreakageRow]
    conversion: Conversion
    refills: Refills
    # The analytics read model's position (notification id of the last event it applied).
    position: int
