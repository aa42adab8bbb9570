"""The events of an account's stream, and how each one evolves the account.

Events apply without reading the catalog, so replaying a stream needs nothing but the stream.
Their fields are the public contract of `credits.events` (domain/integration.py copies them into
CloudEvents `data`, in this order) and of stored streams: add fields, never rename or drop one.

Stored topics name the events as they were first defined, nested in `Account`
(`domain.account:Account.Consumed`): every class here pins that topic (`TOPIC`, which
eventsourcing writes and resolves instead of the module path), and `Account` names each event
as an attribute, so the old topics resolve and new events are stored under the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import CanInitAggregate, CanMutateAggregate

from domain.allocations import ScheduledPlan
from domain.fields import Breakdown, Cents, Credits, Currency, Identifier, LotId, Name, TopUpId
from domain.top_ups import TopUpRequest, TopUpSettings

if TYPE_CHECKING:
    from domain.account_state import AccountState

_TOPIC_PREFIX = "domain.account:Account."


@dataclass(frozen=True)
class Event(CanMutateAggregate[str]):
    TOPIC = _TOPIC_PREFIX + "Event"

    originator_id: str
    originator_version: int
    timestamp: datetime
    command_id: str | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.TOPIC = _TOPIC_PREFIX + cls.__name__

    def apply(self, aggregate: Any) -> None:
        account: AccountState = aggregate
        self.evolve(account)
        account.after_event()

    def evolve(self, account: AccountState) -> None:
        pass


@dataclass(frozen=True)
class Opened(Event, CanInitAggregate[str]):
    class_version = 1
    originator_topic: str
    plan: Name
    catalog_version: str


@dataclass(frozen=True)
class AllocationGranted(Event):
    """A plan's allocation starts: at opening or on a plan change."""

    # 2: `plan` recorded (None in events stored before).
    class_version = 2
    credit_type: Name
    lot_id: LotId
    amount: Credits
    priority: int
    period: str
    period_index: int
    period_id: str
    period_start: datetime
    period_end: datetime
    renewal: str
    expires_at: datetime | None
    repaid_overdraft: Credits
    repaid_debt: Credits
    reason: str
    catalog_version: str
    # Spent earlier in this period under the previous plan: counts against the new amount.
    used_in_period: Credits
    # The plan whose allocation this is; None in events stored before it was recorded.
    plan: Name | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["plan"] = None

    def evolve(self, account: AccountState) -> None:
        account.start_allocation(self)


@dataclass(frozen=True)
class Renewed(AllocationGranted):
    """A period boundary passed: unused allocation reset, added to, or rolled over."""

    class_version = 2  # as AllocationGranted's
    previous_lot_id: LotId
    periods_elapsed: int
    forfeited: Credits
    carried_over: Credits

    def evolve(self, account: AccountState) -> None:
        if self.renewal != "add":
            account.close_lot(self.previous_lot_id, self.forfeited)
        account.start_allocation(self)


@dataclass(frozen=True)
class Consumed(Event):
    class_version = 1
    action: Name | None
    credit_type: Name
    quantity: int
    amount: Credits
    tags: list[str]
    resource: Identifier | None
    metadata: dict[str, Any]
    breakdown: Breakdown
    overdraft_added: Credits
    day: str
    catalog_version: str

    def evolve(self, account: AccountState) -> None:
        account.lots.spend(self.breakdown)
        account.forget_spent(self.breakdown)
        account.owed.add(self.credit_type, overdraft=self.overdraft_added)
        account.usage.count(self.day, self.action, self.resource, self.quantity)


@dataclass(frozen=True)
class Reserved(Event):
    class_version = 1
    hold_id: Identifier
    action: Name | None
    credit_type: Name
    quantity: int
    amount: Credits
    resource: Identifier | None
    breakdown: Breakdown
    expires_at: datetime
    day: str
    catalog_version: str

    def evolve(self, account: AccountState) -> None:
        account.lots.hold(self.breakdown)
        account.open_hold(self)
        account.usage.count(self.day, self.action, self.resource, self.quantity)


@dataclass(frozen=True)
class Captured(Event):
    """Part or all of a hold spent; the rest returns to its lots (forfeited if closed)."""

    class_version = 1
    hold_id: Identifier
    credit_type: Name
    amount: Credits
    breakdown: Breakdown
    released: Breakdown
    forfeited: Credits

    def evolve(self, account: AccountState) -> None:
        account.settle_hold(self.hold_id, "captured", self.breakdown, self.released)


@dataclass(frozen=True)
class PartCaptured(Event):
    """Part of a hold spent while the hold stays open with the rest (a streaming call billed as
    it goes); the last part is a `Captured`, or the rest is released or expires."""

    class_version = 1
    hold_id: Identifier
    credit_type: Name
    amount: Credits
    breakdown: Breakdown

    def evolve(self, account: AccountState) -> None:
        account.capture_part(self.hold_id, self.breakdown)


@dataclass(frozen=True)
class HoldExtended(Event):
    """A hold's expiry moved later (a streaming call still running)."""

    class_version = 1
    hold_id: Identifier
    expires_at: datetime

    def evolve(self, account: AccountState) -> None:
        account.holds.extend(self.hold_id, self.expires_at)


@dataclass(frozen=True)
class Released(Event):
    class_version = 1
    hold_id: Identifier
    credit_type: Name
    amount: Credits
    breakdown: Breakdown
    forfeited: Credits

    def evolve(self, account: AccountState) -> None:
        account.settle_hold(self.hold_id, "released", [], self.breakdown)


@dataclass(frozen=True)
class HoldExpired(Released):
    class_version = 1

    def evolve(self, account: AccountState) -> None:
        account.settle_hold(self.hold_id, "expired", [], self.breakdown)


@dataclass(frozen=True)
class Granted(Event):
    """A lot outside the plan's allocations: promotional, trial, admin, migration, paid."""

    class_version = 1
    lot_id: LotId
    credit_type: Name
    amount: Credits
    source: str
    priority: int
    expires_at: datetime | None
    paid: bool
    payment_reference: str | None
    amount_paid_cents: Cents | None
    currency: Currency | None
    pack: Name | None
    reference: str | None
    top_up_id: TopUpId | None
    migration_tier: Name | None
    repaid_overdraft: Credits
    repaid_debt: Credits
    catalog_version: str

    def evolve(self, account: AccountState) -> None:
        account.add_lot(
            lot_id=self.lot_id,
            credit_type=self.credit_type,
            source=self.source,
            amount=self.amount,
            priority=self.priority,
            at=self.timestamp,
            expires_at=self.expires_at,
            payment_reference=self.payment_reference,
            repaid_overdraft=self.repaid_overdraft,
            repaid_debt=self.repaid_debt,
        )
        if self.payment_reference is not None:
            account.purchases[self.payment_reference] = self.lot_id
        if self.migration_tier is not None:
            account.migrated_from = self.migration_tier


@dataclass(frozen=True)
class Revoked(Event):
    """A refund, chargeback or claw-back: the lot's unspent part first, then the policy."""

    class_version = 1
    lot_id: LotId
    credit_type: Name
    payment_reference: str | None
    amount: Credits
    unspent_revoked: Credits
    policy: str
    forgiven: Credits
    debt_added: Credits
    forfeited: Credits
    reason: str

    def evolve(self, account: AccountState) -> None:
        lot = account.lots[self.lot_id]
        lot.revoke(self.amount, self.unspent_revoked)
        account.owed.add(self.credit_type, debt=self.debt_added)
        if lot.revocable == 0:
            account.close_lot(self.lot_id, self.forfeited)


@dataclass(frozen=True)
class LotExpired(Event):
    class_version = 1
    lot_id: LotId
    credit_type: Name
    amount: Credits
    expires_at: datetime

    def evolve(self, account: AccountState) -> None:
        account.close_lot(self.lot_id, self.amount)


@dataclass(frozen=True)
class LowBalance(Event):
    """Available fell to or below the threshold; fires again only after rising above it."""

    class_version = 1
    credit_type: Name
    available: int
    threshold: Credits

    def evolve(self, account: AccountState) -> None:
        account.low_balance_fired[self.credit_type] = self.threshold


@dataclass(frozen=True)
class TopUpConfigured(Event):
    class_version = 1
    credit_type: Name
    mode: str
    threshold: Credits | None
    amount: Credits | None
    max_per_month: int | None

    def evolve(self, account: AccountState) -> None:
        settings = TopUpSettings(self.mode, self.threshold, self.amount, self.max_per_month)
        account.top_ups.configure(self.credit_type, settings)


@dataclass(frozen=True)
class ResourceLimitSet(Event):
    """The account's own daily limit on one resource set (`daily_limit`) or cleared (null).
    `plan_limit` is the plan's cap when it was set; the lower of the two applies."""

    class_version = 1
    resource: Identifier
    daily_limit: Credits | None
    plan_limit: Credits | None

    def evolve(self, account: AccountState) -> None:
        if self.daily_limit is None:
            account.resource_limits.pop(self.resource, None)
        else:
            account.resource_limits[self.resource] = self.daily_limit


@dataclass(frozen=True)
class TopUpRequested(Event):
    """The payment side should charge the saved card; credits come with the purchase."""

    class_version = 1
    top_up_id: TopUpId
    credit_type: Name
    amount: Credits
    price_cents: Cents
    currency: Currency
    trigger: str
    month: str
    idempotency_key: str
    catalog_version: str

    def evolve(self, account: AccountState) -> None:
        request = TopUpRequest(
            self.top_up_id,
            self.credit_type,
            self.amount,
            self.price_cents,
            self.currency,
            self.trigger,
        )
        account.top_ups.request(request, self.month)


@dataclass(frozen=True)
class TopUpCompleted(Event):
    class_version = 1
    top_up_id: TopUpId
    credit_type: Name
    credits_added: Credits
    amount_charged_cents: Cents
    currency: Currency
    lot_id: LotId

    def evolve(self, account: AccountState) -> None:
        account.top_ups.complete(self.top_up_id)


@dataclass(frozen=True)
class TopUpFailed(Event):
    class_version = 1
    top_up_id: TopUpId
    credit_type: Name
    reason: str
    recovery_url: str | None

    def evolve(self, account: AccountState) -> None:
        account.top_ups.fail(self.top_up_id)


@dataclass(frozen=True)
class PlanChangeScheduled(Event):
    class_version = 1
    plan: Name
    effective_at: datetime

    def evolve(self, account: AccountState) -> None:
        account.scheduled_plan = ScheduledPlan(self.plan, self.effective_at)


@dataclass(frozen=True)
class PlanChanged(Event):
    """The plan switched; its allocations close here and restart in AllocationGranted."""

    class_version = 1
    from_plan: Name
    to_plan: Name
    effective: str
    # [{credit_type, lot_id, forfeited}]: the allocation lots closed, their unheld rest lost.
    closed_allocations: list[dict[str, Any]]

    def evolve(self, account: AccountState) -> None:
        account.plan = self.to_plan
        account.scheduled_plan = None
        for closed in self.closed_allocations:
            account.allocations.end(closed["credit_type"])
            account.close_lot(closed["lot_id"], closed["forfeited"])
