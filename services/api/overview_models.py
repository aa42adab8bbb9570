"""What `GET /v1/accounts/{id}/overview` answers: the account's plan as its catalog means it
(parts of each balance, money for money-budget plans, consumption rate and run-out day, what
it may buy). The Plan & Usage page draws it; a host that draws its own UI reads it too."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanInfo(_Model):
    plan: str
    name: str
    price_cents: int
    currency: str


class MoneyRate(_Model):
    """A money-budget plan's conversion (its purchase rate): `credits` per `per_cents`."""

    currency: str
    credits: int
    per_cents: int


class AllocationInfo(_Model):
    amount: int
    period: str
    renewal: str


class CreditTypeOverview(_Model):
    credit_type: str
    unit: str
    description: str
    # The parts: available = allocation + purchased + other - overdraft - debt.
    available: int
    allocation_remaining: int
    purchased_remaining: int
    # Trial, promotional, admin and migration credits.
    other_remaining: int
    held: int
    overdraft: int
    debt: int
    # What this plan may spend now, the overdraft the catalog allows included: the balance's
    # `spendable` (available, less purchased credits the plan may not spend) plus that
    # overdraft, and never below 0. Named apart from `spendable`: one name, one meaning.
    spendable_with_overdraft: int
    allocation: AllocationInfo | None
    next_reset_at: datetime | None
    money: MoneyRate | None
    low_balance_threshold: int | None
    low_balance: bool
    # Credits spent per day over the last `rate_days` days (rounded down), and the UTC day the
    # spendable credits run out at that rate (null: no spending, or a reset comes first).
    rate_days: int
    spent_in_rate_days: int
    rate_per_day: int
    runs_out_on: date | None
    reset_comes_first: bool


class ActionInfo(_Model):
    action: str
    credit_type: str
    cost: int
    tags: list[str]


class PackOffer(_Model):
    pack: str
    name: str
    credit_type: str
    amount: int
    price_cents: int
    currency: str


class AmountOffer(_Model):
    """Buy any amount of money's worth within min..max (seed 000's "Buy Credits")."""

    credit_type: str
    credits: int
    per_cents: int
    min_cents: int
    max_cents: int | None
    currency: str


class AutoTopUpInfo(_Model):
    threshold: int
    amount: int
    max_per_month: int


class TopUpOffer(_Model):
    """An on-demand top-up (charged to the saved card) and the plan's auto top-up default."""

    credit_type: str
    price_per_credit_cents: int
    min_credits: int
    max_credits: int
    max_per_month_limit: int
    currency: str
    auto: AutoTopUpInfo | None


class BuyRefusal(_Model):
    """A credit type this plan cannot buy, and what would allow it."""

    credit_type: str
    reason: str
    plans_that_may: list[str]


class BuyOptions(_Model):
    packs: list[PackOffer]
    amounts: list[AmountOffer]
    top_ups: list[TopUpOffer]
    refused: list[BuyRefusal]


class AccountOverview(_Model):
    account_id: str
    catalog: str
    plan: PlanInfo
    scheduled_plan: str | None
    scheduled_at: datetime | None
    next_reset_at: datetime | None
    credit_types: list[CreditTypeOverview]
    actions: list[ActionInfo]
    buy: BuyOptions
    # The notification id of the last event applied to this account (for `min_position`).
    position: int
