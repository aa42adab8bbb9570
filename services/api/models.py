"""The shapes the HTTP API takes and answers with: the OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

from domain.errors import ErrorCode
from domain.replies import Balance, Reply
from services.api.portal_tokens import MAX_TTL_SECONDS, MIN_TTL_SECONDS

ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiErrorBody(_Model):
    # The reply codes of DESIGN §2.3, plus the HTTP-only ones of docs/API.md.
    code: str = Field(
        examples=[ErrorCode.unknown_account.value, "invalid_request", "read_model_behind"]
    )
    message: str


class ApiError(_Model):
    error: ApiErrorBody


class CommandTimeoutError(_Model):
    """504: the command was sent and acknowledged by Kafka, but the ledger's reply did not come
    in time. Read its outcome later with `GET /v1/accounts/{id}/commands/{command_id}`."""

    command_id: str
    error: ApiErrorBody


class CommandOutcome(_Model):
    """An accepted command's receipt: the reply the ledger gave when it applied it."""

    command_id: str
    account_id: str
    recorded_at: datetime
    reply: Reply


def _integral(value: object) -> object:
    # JSON Schema's "integer" takes 60.0; a string or a bool is still refused (strict).
    return int(value) if isinstance(value, float) and value.is_integer() else value


class PortalTokenRequest(_Model):
    account_id: Annotated[str, Field(pattern=ACCOUNT_ID_PATTERN)]
    ttl_seconds: Annotated[
        int,
        Strict(),
        Field(ge=MIN_TTL_SECONDS, le=MAX_TTL_SECONDS),
        BeforeValidator(_integral),
    ]


class PortalTokenIssued(_Model):
    token: str
    account_id: str
    expires_at: datetime


class ProjectionStatus(_Model):
    projection: str
    position: int
    lag_events: int
    last_error: str | None
    error_at: datetime | None


class ProjectionsStatus(_Model):
    head: int
    projections: list[ProjectionStatus]


class HoldView(_Model):
    hold_id: str
    credit_type: str
    action: str | None
    amount: int
    reserved_at: datetime
    expires_at: datetime


class ResourceView(_Model):
    """One resource (a QR code, say): its limits and its use today (UTC)."""

    resource: str
    # The account's own limit (`set_resource_limit`), or null.
    daily_limit: int | None
    # The plan's cap (catalog `resource_daily_limit`), or null.
    plan_limit: int | None
    # The lower of the two: what a consume or reserve naming the resource is held to.
    effective_limit: int | None
    # Units used today (UTC), consumes and reserves alike.
    used_today: int


class UsageProfile(_Model):
    """A daily-allocation product's usage card (seed 004's `UserCreditsProfile`)."""

    credit_type: str
    credits_used_today: int
    credits_remaining: int
    credits_per_day: int
    next_reset_time: datetime | None
    totals_per_action: dict[str, int]


class LotView(_Model):
    """A lot as the ledger recorded it at `as_of` (reads at a past time only)."""

    lot_id: str
    credit_type: str
    source: str
    amount: int
    remaining: int
    held: int
    revoked: int
    priority: int
    paid: bool
    closed: bool
    granted_at: datetime
    expires_at: datetime | None
    payment_reference: str | None
    # Its expiry had passed at `as_of`, but the ledger recorded the expiry only later.
    past_expiry: bool


class AccountView(_Model):
    account_id: str
    plan: str
    opened_at: datetime
    scheduled_plan: str | None
    scheduled_at: datetime | None
    # The earliest next reset over the credit types, or null when nothing renews.
    next_reset_at: datetime | None
    balances: dict[str, Balance]
    holds: list[HoldView]
    # Every resource with a limit of its own or used today (UTC), by name; at most
    # `MAX_RESOURCES_SHOWN` (500).
    resources: list[ResourceView]
    profile: UsageProfile | None
    # Stream version and notification id of the last event the read model applied (with
    # `as_of`: the last event at or before it).
    version: int
    position: int
    # With `?as_of=`: the instant read (UTC), and the lots then; null in a current read.
    as_of: datetime | None = None
    lots: list[LotView] | None = None


class UsageRow(_Model):
    start: date
    action: str | None
    credit_type: str
    tags: list[str]
    # Units of the action used (Σ quantity), reserves included.
    count: int
    # Credits actually spent (consumes and captures).
    credits: int
    # Credits the catalog priced the uses at (consumes and holds).
    cost: int


class UsagePage(_Model):
    account_id: str
    bucket: str
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    usage: list[UsageRow]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TransactionOrigin(_Model):
    """Where a movement comes from (docs/READ_MODELS.md): its source, and whichever of pack,
    payment reference, top-up, hold, plan and period, reason the event names (null otherwise)."""

    source: str = Field(
        description="a grant's source (purchase, top_up, promotional, trial, admin, "
        "migration), allocation, renewal, usage, hold, revocation, expiry or plan_change"
    )
    pack: str | None
    payment_reference: str | None
    top_up_id: str | None
    hold_id: str | None
    plan: str | None = Field(
        description="an allocation's plan (null for allocations recorded before plans were); "
        "a plan change's new plan"
    )
    period_id: str | None
    period_start: datetime | None
    period_end: datetime | None
    reason: str | None = Field(
        description="a revocation's reason, a grant's reference, or why an allocation "
        "started (opened, plan_changed, period)"
    )


class TransactionRow(_Model):
    """One row of `rm_transactions`; its `origin_*` columns become `origin` (null for rows
    written before origins were recorded, until the transactions read model is rebuilt)."""

    @model_validator(mode="before")
    @classmethod
    def _origin_from_columns(cls, row: Any) -> Any:
        if not isinstance(row, dict) or "origin_source" not in row:
            return row
        fields = {key.removeprefix("origin_"): row[key] for key in row if key.startswith("origin_")}
        rest = {key: value for key, value in row.items() if not key.startswith("origin_")}
        return {**rest, "origin": None if fields["source"] is None else fields}

    version: int
    credit_type: str
    position: int
    at: datetime
    kind: str
    amount: int
    delta: int
    available_before: int
    available_after: int
    reference: str | None
    command_id: str | None
    origin: TransactionOrigin | None


class TransactionsPage(_Model):
    account_id: str
    transactions: list[TransactionRow]
    # Pass as `before` for the next (older) page; null on the last page.
    next_before: str | None
