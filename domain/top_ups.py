"""Top-ups: credits requested for a charge of the saved card, settled by a purchase.

A request waits for the payment side (`pending`); a failed one stays recoverable through its
recovery URL (`failed`, the last 100). Auto top-up settings come from `configure_top_up`, else
the plan's default; the auto requests of each credit type are counted per calendar month.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.catalog import TopUp
from domain.errors import ErrorCode, LedgerError
from domain.fields import Cents, Credits, Currency, Name, TopUpId

# Failed top-ups that a payment through their recovery URL may still settle.
FAILED_TOP_UPS_REMEMBERED = 100


@dataclass(frozen=True, slots=True)
class TopUpRequest:
    top_up_id: TopUpId
    credit_type: Name
    amount: Credits
    price_cents: Cents
    currency: Currency
    trigger: str  # "on_demand" or "auto"

    def __deepcopy__(self, memo: dict[int, Any]) -> TopUpRequest:
        return self  # immutable: a copy of the account may share it


@dataclass(frozen=True, slots=True)
class TopUpSettings:
    """Auto top-up of one credit type: below `threshold`, request `amount`, so many a month."""

    mode: str  # "auto" or "off" (then the other fields are None)
    threshold: Credits | None
    amount: Credits | None
    max_per_month: int | None

    def __deepcopy__(self, memo: dict[int, Any]) -> TopUpSettings:
        return self  # immutable: a copy of the account may share it


@dataclass(frozen=True, slots=True)
class MonthlyCount:
    month: str  # the UTC calendar month, `YYYY-MM`
    count: int

    def __deepcopy__(self, memo: dict[int, Any]) -> MonthlyCount:
        return self  # immutable: a copy of the account may share it


@dataclass(slots=True)
class TopUps:
    pending: dict[TopUpId, TopUpRequest] = field(default_factory=dict)
    failed: dict[TopUpId, TopUpRequest] = field(default_factory=dict)
    settings: dict[Name, TopUpSettings] = field(default_factory=dict)
    auto_requested: dict[Name, MonthlyCount] = field(default_factory=dict)
    seq: int = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> TopUps:
        # The requests, settings and counts are immutable: new dicts of the same ones.
        return TopUps(
            dict(self.pending),
            dict(self.failed),
            dict(self.settings),
            dict(self.auto_requested),
            self.seq,
        )

    def next_id(self) -> TopUpId:
        return f"tu-{self.seq + 1}"

    def awaiting_payment(self, top_up_id: str) -> TopUpRequest | None:
        """Requested and not paid yet: pending, or failed and recoverable."""
        return self.pending.get(top_up_id) or self.failed.get(top_up_id)

    def settled_by(self, top_up_id: str, credit_type: str, amount: int | None) -> TopUpRequest:
        """The top-up a purchase of `credit_type` settles: awaiting payment, and of `amount`
        credits if the purchase names an amount."""
        request = self.awaiting_payment(top_up_id)
        if request is None or request.credit_type != credit_type:
            raise LedgerError(
                ErrorCode.invalid_command, f"no pending {credit_type} top-up {top_up_id!r}"
            )
        if amount is not None and amount != request.amount:
            raise LedgerError(
                ErrorCode.invalid_command, f"amount is not the {request.amount} requested"
            )
        return request

    def auto_settings(self, credit_type: str, rule: TopUp | None) -> TopUpSettings | None:
        """The auto top-up in force, if any: as configured, else the plan's default."""
        if rule is None:
            return None
        configured = self.settings.get(credit_type)
        if configured is not None:
            return configured if configured.mode == "auto" else None
        if rule.auto is None:
            return None
        return TopUpSettings("auto", rule.auto.threshold, rule.auto.amount, rule.auto.max_per_month)

    def wants_auto(self, credit_type: str, settings: TopUpSettings, month: str) -> bool:
        """Whether a low balance may request another auto top-up: none of this credit type is
        pending, and fewer than `max_per_month` were requested this month (failed ones count)."""
        if any(p.credit_type == credit_type and p.trigger == "auto" for p in self.pending.values()):
            return False
        counted = self.auto_requested.get(credit_type)
        assert settings.max_per_month is not None
        return not (counted and counted.month == month and counted.count >= settings.max_per_month)

    def configure(self, credit_type: str, settings: TopUpSettings) -> None:
        self.settings[credit_type] = settings

    def request(self, request: TopUpRequest, month: str) -> None:
        self.seq += 1
        self.pending[request.top_up_id] = request
        if request.trigger == "auto":
            counted = self.auto_requested.get(request.credit_type)
            count = counted.count if counted and counted.month == month else 0
            self.auto_requested[request.credit_type] = MonthlyCount(month, count + 1)

    def complete(self, top_up_id: str) -> None:
        # Settled from pending, or recovered after it failed (paid through recovery_url).
        if self.pending.pop(top_up_id, None) is None:
            del self.failed[top_up_id]

    def fail(self, top_up_id: str) -> None:
        # Kept so that paying through the recovery URL (a Checkout Session carrying this
        # top_up_id) still settles it; the oldest are forgotten first.
        self.failed[top_up_id] = self.pending.pop(top_up_id)
        while len(self.failed) > FAILED_TOP_UPS_REMEMBERED:
            del self.failed[next(iter(self.failed))]

    def check(self) -> None:
        if self.failed:
            assert self.pending.keys().isdisjoint(self.failed), (self.pending, self.failed)
