"""The account aggregate: one stream per caller's account id, holding lots of every credit type.

Methods decide (reading the catalog and `now` from a `Context`) and trigger events; events apply
(never reading the catalog), so replaying a stream needs nothing but the stream. Every method
starts by catching up with time (expired holds, a scheduled plan change, due renewals, expired
lots), so a command arriving after a boundary sees the account as of `now`. A method that
raises `LedgerError` may already have triggered catch-up events: the caller must then discard
the aggregate (the service decides on a copy), which is what makes a rejection change nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    CanSnapshotAggregate,
)

from domain.catalog import MAX_AMOUNT, PAID_SOURCES, Catalog, LotSource, TopUp
from domain.errors import ErrorCode, LedgerError
from domain.lots import Breakdown, Hold, Lot, draw, total
from domain.periods import Period, PeriodKind, calendar_month, period_containing, utc_day

# Closed hold ids remembered to tell `hold_expired` from `hold_not_found`; the oldest go first.
CLOSED_HOLDS_REMEMBERED = 1000
# Failed top-ups that a payment through their recovery URL may still settle.
FAILED_TOP_UPS_REMEMBERED = 100

E = TypeVar("E", bound="Account.Event")


@dataclass(frozen=True)
class Context:
    """What a decision may read besides the account: the catalog, the time, the command."""

    catalog: Catalog
    now: datetime
    command_id: str | None = None


@dataclass
class AllocationState:
    credit_type: str
    period: PeriodKind
    period_index: int
    period_id: str
    period_start: datetime
    period_end: datetime
    renewal: str
    lot_id: str
    used_before: int


class Account(BaseAggregate[str]):
    # ---------------------------------------------------------------- events

    @dataclass(frozen=True)
    class Event(CanMutateAggregate[str]):
        originator_id: str
        originator_version: int
        timestamp: datetime
        command_id: str | None

        def apply(self, aggregate: Any) -> None:
            assert isinstance(aggregate, Account)
            self.evolve(aggregate)
            aggregate._rearm_low_balance()
            aggregate._check_invariants()

        def evolve(self, account: Account) -> None:
            pass

    @dataclass(frozen=True)
    class Opened(Event, CanInitAggregate[str]):
        class_version = 1
        originator_topic: str
        plan: str
        catalog_version: str

    @dataclass(frozen=True)
    class AllocationGranted(Event):
        """A plan's allocation starts: at opening or on a plan change."""

        class_version = 1
        credit_type: str
        lot_id: str
        amount: int
        priority: int
        period: str
        period_index: int
        period_id: str
        period_start: datetime
        period_end: datetime
        renewal: str
        expires_at: datetime | None
        repaid_overdraft: int
        repaid_debt: int
        reason: str
        catalog_version: str
        # Spent earlier in this period under the previous plan: counts against the new amount.
        used_in_period: int

        def evolve(self, account: Account) -> None:
            account._start_allocation(self)

    @dataclass(frozen=True)
    class Renewed(AllocationGranted):
        """A period boundary passed: unused allocation reset, added to, or rolled over."""

        class_version = 1
        previous_lot_id: str
        periods_elapsed: int
        forfeited: int
        carried_over: int

        def evolve(self, account: Account) -> None:
            if self.renewal != "add":
                account._close_lot(self.previous_lot_id, self.forfeited)
            account._start_allocation(self)

    @dataclass(frozen=True)
    class Consumed(Event):
        class_version = 1
        action: str | None
        credit_type: str
        quantity: int
        amount: int
        tags: list[str]
        resource: str | None
        metadata: dict[str, Any]
        breakdown: Breakdown
        overdraft_added: int
        day: str
        catalog_version: str

        def evolve(self, account: Account) -> None:
            for part in self.breakdown:
                account.lots[part["lot_id"]].remaining -= part["amount"]
                account._prune(part["lot_id"])
            account._add(account.overdraft, self.credit_type, self.overdraft_added)
            account._count_usage(self.day, self.action, self.resource, self.quantity)

    @dataclass(frozen=True)
    class Reserved(Event):
        class_version = 1
        hold_id: str
        action: str | None
        credit_type: str
        quantity: int
        amount: int
        resource: str | None
        breakdown: Breakdown
        expires_at: datetime
        day: str
        catalog_version: str

        def evolve(self, account: Account) -> None:
            for part in self.breakdown:
                account.lots[part["lot_id"]].held += part["amount"]
            account.holds[self.hold_id] = Hold(
                hold_id=self.hold_id,
                credit_type=self.credit_type,
                amount=self.amount,
                parts=[dict(part) for part in self.breakdown],
                expires_at=self.expires_at,
                action=self.action,
            )
            account._count_usage(self.day, self.action, self.resource, self.quantity)

    @dataclass(frozen=True)
    class Captured(Event):
        """Part or all of a hold spent; the rest returns to its lots (forfeited if closed)."""

        class_version = 1
        hold_id: str
        credit_type: str
        amount: int
        breakdown: Breakdown
        released: Breakdown
        forfeited: int

        def evolve(self, account: Account) -> None:
            account._settle_hold(self.hold_id, self.breakdown, self.released, "captured")

    @dataclass(frozen=True)
    class Released(Event):
        class_version = 1
        hold_id: str
        credit_type: str
        amount: int
        breakdown: Breakdown
        forfeited: int

        def evolve(self, account: Account) -> None:
            account._settle_hold(self.hold_id, [], self.breakdown, "released")

    @dataclass(frozen=True)
    class HoldExpired(Released):
        class_version = 1

        def evolve(self, account: Account) -> None:
            account._settle_hold(self.hold_id, [], self.breakdown, "expired")

    @dataclass(frozen=True)
    class Granted(Event):
        """A lot outside the plan's allocations: promotional, trial, admin, migration, paid."""

        class_version = 1
        lot_id: str
        credit_type: str
        amount: int
        source: str
        priority: int
        expires_at: datetime | None
        paid: bool
        payment_reference: str | None
        amount_paid_cents: int | None
        currency: str | None
        pack: str | None
        reference: str | None
        top_up_id: str | None
        migration_tier: str | None
        repaid_overdraft: int
        repaid_debt: int
        catalog_version: str

        def evolve(self, account: Account) -> None:
            account._add_lot(
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
        lot_id: str
        credit_type: str
        payment_reference: str | None
        amount: int
        unspent_revoked: int
        policy: str
        forgiven: int
        debt_added: int
        forfeited: int
        reason: str

        def evolve(self, account: Account) -> None:
            lot = account.lots[self.lot_id]
            lot.remaining -= self.unspent_revoked
            lot.revoked += self.amount
            account._add(account.debt, self.credit_type, self.debt_added)
            if lot.revoked == lot.amount:
                account._close_lot(self.lot_id, self.forfeited)

    @dataclass(frozen=True)
    class LotExpired(Event):
        class_version = 1
        lot_id: str
        credit_type: str
        amount: int
        expires_at: datetime

        def evolve(self, account: Account) -> None:
            account._close_lot(self.lot_id, self.amount)

    @dataclass(frozen=True)
    class LowBalance(Event):
        """Available fell to or below the threshold; fires again only after rising above it."""

        class_version = 1
        credit_type: str
        available: int
        threshold: int

        def evolve(self, account: Account) -> None:
            account.low_balance_fired[self.credit_type] = self.threshold

    @dataclass(frozen=True)
    class TopUpConfigured(Event):
        class_version = 1
        credit_type: str
        mode: str
        threshold: int | None
        amount: int | None
        max_per_month: int | None

        def evolve(self, account: Account) -> None:
            account.top_up_settings[self.credit_type] = {
                "mode": self.mode,
                "threshold": self.threshold,
                "amount": self.amount,
                "max_per_month": self.max_per_month,
            }

    @dataclass(frozen=True)
    class TopUpRequested(Event):
        """The payment side should charge the saved card; credits come with the purchase."""

        class_version = 1
        top_up_id: str
        credit_type: str
        amount: int
        price_cents: int
        currency: str
        trigger: str
        month: str
        idempotency_key: str
        catalog_version: str

        def evolve(self, account: Account) -> None:
            account.top_up_seq += 1
            account.pending_top_ups[self.top_up_id] = {
                "credit_type": self.credit_type,
                "amount": self.amount,
                "price_cents": self.price_cents,
                "currency": self.currency,
                "trigger": self.trigger,
            }
            if self.trigger == "auto":
                counted = account.auto_top_ups.get(self.credit_type)
                count = counted["count"] if counted and counted["month"] == self.month else 0
                account.auto_top_ups[self.credit_type] = {"month": self.month, "count": count + 1}

    @dataclass(frozen=True)
    class TopUpCompleted(Event):
        class_version = 1
        top_up_id: str
        credit_type: str
        credits_added: int
        amount_charged_cents: int
        currency: str
        lot_id: str

        def evolve(self, account: Account) -> None:
            # Settled from pending, or recovered after it failed (paid through recovery_url).
            if account.pending_top_ups.pop(self.top_up_id, None) is None:
                del account.failed_top_ups[self.top_up_id]

    @dataclass(frozen=True)
    class TopUpFailed(Event):
        class_version = 1
        top_up_id: str
        credit_type: str
        reason: str
        recovery_url: str | None

        def evolve(self, account: Account) -> None:
            # Kept so that paying through the recovery URL (a Checkout Session carrying this
            # top_up_id) still settles it; the oldest are forgotten first.
            account.failed_top_ups[self.top_up_id] = account.pending_top_ups.pop(self.top_up_id)
            while len(account.failed_top_ups) > FAILED_TOP_UPS_REMEMBERED:
                del account.failed_top_ups[next(iter(account.failed_top_ups))]

    @dataclass(frozen=True)
    class PlanChangeScheduled(Event):
        class_version = 1
        plan: str
        effective_at: datetime

        def evolve(self, account: Account) -> None:
            account.scheduled_plan = {"plan": self.plan, "effective_at": self.effective_at}

    @dataclass(frozen=True)
    class PlanChanged(Event):
        """The plan switched; its allocations close here and restart in AllocationGranted."""

        class_version = 1
        from_plan: str
        to_plan: str
        effective: str
        closed_allocations: list[dict[str, Any]]

        def evolve(self, account: Account) -> None:
            account.plan = self.to_plan
            account.scheduled_plan = None
            for closed in self.closed_allocations:
                del account.allocations[closed["credit_type"]]
                account._close_lot(closed["lot_id"], closed["forfeited"])

    @dataclass(frozen=True)
    class Snapshot(CanSnapshotAggregate[str]):
        originator_id: str
        originator_version: int
        timestamp: datetime
        topic: str
        state: dict[str, Any]

    # ---------------------------------------------------------------- state

    def __init__(self, plan: str, catalog_version: str, timestamp: datetime) -> None:
        self.plan = plan
        self.catalog_version = catalog_version
        # Monthly periods renew on this anniversary (clamped to the month's last day).
        self.anchor_at = timestamp
        self.lots: dict[str, Lot] = {}
        self.lot_seq = 0
        self.allocations: dict[str, AllocationState] = {}
        self.holds: dict[str, Hold] = {}
        self.closed_holds: dict[str, str] = {}
        # Spent beyond the lots (down to the overdraft floor), and refunds owed: both are
        # repaid first from the next credits added.
        self.overdraft: dict[str, int] = {}
        self.debt: dict[str, int] = {}
        self.low_balance_fired: dict[str, int] = {}
        self.usage_day = ""
        self.action_usage: dict[str, int] = {}
        self.resource_usage: dict[str, int] = {}
        self.top_up_settings: dict[str, dict[str, Any]] = {}
        self.pending_top_ups: dict[str, dict[str, Any]] = {}
        self.failed_top_ups: dict[str, dict[str, Any]] = {}
        self.auto_top_ups: dict[str, dict[str, Any]] = {}
        self.top_up_seq = 0
        self.scheduled_plan: dict[str, Any] | None = None
        self.migrated_from: str | None = None
        self.purchases: dict[str, str] = {}

    # ---------------------------------------------------------------- reading

    def available(self, credit_type: str) -> int:
        unheld = sum(lot.unheld for lot in self._lots_of(credit_type))
        return unheld - self.overdraft.get(credit_type, 0) - self.debt.get(credit_type, 0)

    def held(self, credit_type: str) -> int:
        return sum(lot.held for lot in self._lots_of(credit_type))

    def lots_total(self, credit_type: str) -> int:
        """Σ remaining of the lots: with holds and debts, it reconciles with `available`."""
        return sum(lot.remaining for lot in self._lots_of(credit_type))

    def next_due_at(self) -> datetime | None:
        """When time alone next changes this account: a hold or lot expiring, a period ending,
        a scheduled plan change. The scheduler sends an `expire` command at that moment; a
        command arriving earlier catches up the same way, so a late scheduler loses nothing."""
        due = [hold.expires_at for hold in self.holds.values()]
        due += [allocation.period_end for allocation in self.allocations.values()]
        due += [
            lot.expires_at
            for lot in self.lots.values()
            if not lot.closed and lot.expires_at is not None
        ]
        if self.scheduled_plan is not None:
            due.append(self.scheduled_plan["effective_at"])
        return min(due, default=None)

    def balances(self, catalog: Catalog) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for credit_type in catalog.credit_types:
            lots = list(self._lots_of(credit_type))
            allocation = self.allocations.get(credit_type)
            result[credit_type] = {
                "available": self.available(credit_type),
                "held": self.held(credit_type),
                "allocation_remaining": sum(
                    lot.unheld for lot in lots if lot.source == "allocation"
                ),
                "purchased_remaining": sum(lot.unheld for lot in lots if lot.paid),
                "next_reset_at": allocation.period_end if allocation else None,
            }
        return result

    # ---------------------------------------------------------------- commands

    @classmethod
    def open(cls, ctx: Context, account_id: str, plan: str) -> Account:
        if plan not in ctx.catalog.plans:
            raise LedgerError(ErrorCode.unknown_plan, f"no plan {plan!r} in the catalog")
        account = cls._create(
            cls.Opened,
            id=account_id,
            timestamp=ctx.now,
            command_id=ctx.command_id,
            plan=plan,
            catalog_version=ctx.catalog.version,
        )
        account._start_plan_allocations(ctx, used={}, reason="opened")
        for credit_type, trial in ctx.catalog.plans[plan].trial.items():
            expires_at = None
            if trial.expires_after_days is not None:
                expires_at = ctx.now + timedelta(days=trial.expires_after_days)
            account._grant(ctx, credit_type, trial.amount, "trial", expires_at=expires_at)
        return account

    def consume(
        self,
        ctx: Context,
        *,
        action: str | None,
        credit_type: str | None,
        amount: int | None,
        quantity: int,
        resource: str | None,
        metadata: dict[str, Any],
    ) -> dict[str, Any]:
        with self._command(ctx):
            ct, cost, tags = self._price(ctx, action, credit_type, amount, quantity)
            self._check_limits(ctx, action, resource, quantity)
            breakdown, overdraft = self._take(ctx, ct, cost, overdraft=True)
            self._trigger(
                ctx,
                self.Consumed,
                action=action,
                credit_type=ct,
                quantity=quantity,
                amount=cost,
                tags=tags,
                resource=resource,
                metadata=dict(metadata),
                breakdown=breakdown,
                overdraft_added=overdraft,
                day=utc_day(ctx.now),
                catalog_version=ctx.catalog.version,
            )
            self._after_spend(ctx, ct)
        return {
            "credit_type": ct,
            "action": action,
            "quantity": quantity,
            "amount": cost,
            "breakdown": breakdown,
            "overdraft": overdraft,
        }

    def reserve(
        self,
        ctx: Context,
        *,
        hold_id: str,
        action: str | None,
        credit_type: str | None,
        amount: int | None,
        quantity: int,
        ttl_seconds: int,
        resource: str | None,
    ) -> dict[str, Any]:
        with self._command(ctx):
            if hold_id in self.holds or hold_id in self.closed_holds:
                raise LedgerError(ErrorCode.invalid_command, f"hold_id {hold_id!r} already used")
            if ttl_seconds > ctx.catalog.max_hold_ttl_seconds:
                raise LedgerError(
                    ErrorCode.invalid_command,
                    f"ttl_seconds is above {ctx.catalog.max_hold_ttl_seconds}",
                )
            ct, cost, _ = self._price(ctx, action, credit_type, amount, quantity)
            self._check_limits(ctx, action, resource, quantity)
            # Holds never overdraw: what is held must exist.
            breakdown, _ = self._take(ctx, ct, cost, overdraft=False)
            expires_at = ctx.now + timedelta(seconds=ttl_seconds)
            self._trigger(
                ctx,
                self.Reserved,
                hold_id=hold_id,
                action=action,
                credit_type=ct,
                quantity=quantity,
                amount=cost,
                resource=resource,
                breakdown=breakdown,
                expires_at=expires_at,
                day=utc_day(ctx.now),
                catalog_version=ctx.catalog.version,
            )
            self._after_spend(ctx, ct)
        return {
            "hold_id": hold_id,
            "credit_type": ct,
            "amount": cost,
            "expires_at": expires_at.isoformat(),
            "breakdown": breakdown,
        }

    def capture(self, ctx: Context, *, hold_id: str, amount: int | None) -> dict[str, Any]:
        with self._command(ctx):
            hold = self._open_hold(hold_id)
            captured_amount = hold.amount if amount is None else amount
            if captured_amount > hold.amount:
                raise LedgerError(
                    ErrorCode.invalid_command, f"amount is above the {hold.amount} held"
                )
            captured, released = _split(hold.parts, captured_amount)
            self._trigger(
                ctx,
                self.Captured,
                hold_id=hold_id,
                credit_type=hold.credit_type,
                amount=captured_amount,
                breakdown=captured,
                released=released,
                forfeited=self._forfeited(released),
            )
            self._after_spend(ctx, hold.credit_type)
        return {
            "hold_id": hold_id,
            "captured": captured_amount,
            "released": hold.amount - captured_amount,
            "breakdown": captured,
        }

    def release(self, ctx: Context, *, hold_id: str) -> dict[str, Any]:
        with self._command(ctx):
            hold = self._open_hold(hold_id)
            self._trigger(
                ctx,
                self.Released,
                hold_id=hold_id,
                credit_type=hold.credit_type,
                amount=hold.amount,
                breakdown=hold.parts,
                forfeited=self._forfeited(hold.parts),
            )
        return {"hold_id": hold_id, "released": hold.amount}

    def grant(
        self,
        ctx: Context,
        *,
        credit_type: str,
        amount: int,
        source: LotSource,
        expires_at: datetime | None,
        priority: int | None,
        reference: str | None,
    ) -> dict[str, Any]:
        with self._command(ctx):
            self._known_credit_type(ctx, credit_type)
            if expires_at is not None and expires_at <= ctx.now:
                raise LedgerError(ErrorCode.invalid_command, "expires_at is not in the future")
            lot_id = self._grant(
                ctx,
                credit_type,
                amount,
                source,
                expires_at=expires_at,
                priority=priority,
                reference=reference,
            )
        return {"lot_id": lot_id, "credit_type": credit_type, "amount": amount}

    def migrate(self, ctx: Context, *, tier: str) -> dict[str, Any]:
        with self._command(ctx):
            migration = ctx.catalog.migration
            if migration is None:
                raise LedgerError(ErrorCode.not_eligible, "the catalog has no migration table")
            if tier not in migration.tiers:
                raise LedgerError(ErrorCode.invalid_command, f"unknown legacy tier {tier!r}")
            if self.migrated_from is not None:
                raise LedgerError(
                    ErrorCode.not_eligible, f"already migrated from {self.migrated_from!r}"
                )
            amount = migration.tiers[tier]
            lot_id = self._grant(
                ctx, migration.credit_type, amount, "migration", migration_tier=tier
            )
        return {"lot_id": lot_id, "credit_type": migration.credit_type, "amount": amount}

    def purchase(
        self,
        ctx: Context,
        *,
        pack: str | None,
        credit_type: str | None,
        amount: int | None,
        payment_reference: str,
        amount_paid: int,
        currency: str,
        top_up_id: str | None,
    ) -> dict[str, Any]:
        """Credits for a payment that succeeded: a pack, an amount at the plan's rate, a top-up."""
        with self._command(ctx):
            if payment_reference in self.purchases:
                raise LedgerError(
                    ErrorCode.invalid_command,
                    f"payment_reference {payment_reference!r} is already recorded",
                )
            expires_at = None
            source: LotSource = "purchase"
            if pack is not None:
                ct, credits, expires_at = self._price_pack(ctx, pack, amount_paid, currency)
            elif top_up_id is not None:
                assert credit_type is not None
                ct, credits = credit_type, self._price_top_up(top_up_id, credit_type, amount)
                source = "top_up"
                _expect_payment(self._open_top_up(top_up_id), amount_paid, currency)
            else:
                assert credit_type is not None
                ct = credit_type
                credits = self._price_amount(ctx, credit_type, amount, amount_paid, currency)
            lot_id = self._grant(
                ctx,
                ct,
                credits,
                source,
                expires_at=expires_at,
                payment_reference=payment_reference,
                amount_paid_cents=amount_paid,
                currency=currency,
                pack=pack,
                top_up_id=top_up_id,
            )
            if top_up_id is not None:
                self._trigger(
                    ctx,
                    self.TopUpCompleted,
                    top_up_id=top_up_id,
                    credit_type=ct,
                    credits_added=credits,
                    amount_charged_cents=amount_paid,
                    currency=currency,
                    lot_id=lot_id,
                )
        return {"lot_id": lot_id, "credit_type": ct, "amount": credits, "source": source}

    def revoke(
        self,
        ctx: Context,
        *,
        payment_reference: str | None,
        grant_id: str | None,
        amount: int | None,
        reason: str,
    ) -> dict[str, Any]:
        with self._command(ctx):
            lot = self._revocable_lot(payment_reference, grant_id)
            revocable = lot.amount - lot.revoked
            if revocable == 0:
                raise LedgerError(ErrorCode.invalid_command, f"lot {lot.lot_id} is fully revoked")
            revoked = revocable if amount is None else amount
            if revoked > revocable:
                raise LedgerError(
                    ErrorCode.invalid_command, f"amount is above the {revocable} left to revoke"
                )
            unspent = min(revoked, lot.unheld)
            spent = revoked - unspent
            policy = ctx.catalog.credit_types[lot.credit_type].refund_policy
            closes = lot.revoked + revoked == lot.amount
            self._trigger(
                ctx,
                self.Revoked,
                lot_id=lot.lot_id,
                credit_type=lot.credit_type,
                payment_reference=lot.payment_reference,
                amount=revoked,
                unspent_revoked=unspent,
                policy=policy,
                forgiven=spent if policy == "forgive" else 0,
                debt_added=spent if policy == "debt" else 0,
                forfeited=lot.unheld - unspent if closes else 0,
                reason=reason,
            )
        return {
            "lot_id": lot.lot_id,
            "credit_type": lot.credit_type,
            "revoked": revoked,
            "unspent_revoked": unspent,
            "policy": policy,
            "spent": spent,
        }

    def renew(self, ctx: Context, *, period_id: str) -> dict[str, Any]:
        """Renew what is due. Idempotent: a period already started renews nothing again."""
        if period_id > ctx.now.date().isoformat():
            raise LedgerError(ErrorCode.invalid_command, f"period {period_id} has not started")
        mark = len(self.pending_events)
        with self._command(ctx):
            pass
        renewed = [e.credit_type for e in self.pending_events[mark:] if isinstance(e, self.Renewed)]
        return {"period_id": period_id, "renewed": renewed}

    def expire(self, ctx: Context) -> dict[str, Any]:
        mark = len(self.pending_events)
        with self._command(ctx):
            pass
        return {"events": [type(e).__name__ for e in self.pending_events[mark:]]}

    def change_plan(self, ctx: Context, *, plan: str, effective: str) -> dict[str, Any]:
        with self._command(ctx):
            if plan not in ctx.catalog.plans:
                raise LedgerError(ErrorCode.unknown_plan, f"no plan {plan!r} in the catalog")
            if plan == self.plan and self.scheduled_plan is None:
                return {"plan": plan, "changed": False}
            if effective == "next_period":
                # Plans change with the billing month, whatever the allocations' periods.
                effective_at = period_containing("month", self.anchor_at, ctx.now).end
                self._trigger(ctx, self.PlanChangeScheduled, plan=plan, effective_at=effective_at)
                return {"plan": plan, "effective_at": effective_at.isoformat(), "changed": False}
            self._switch_plan(ctx, plan, effective)
        return {"plan": plan, "changed": True}

    def configure_top_up(
        self,
        ctx: Context,
        *,
        credit_type: str,
        mode: str,
        threshold: int | None,
        amount: int | None,
        max_per_month: int | None,
    ) -> dict[str, Any]:
        with self._command(ctx):
            self._known_credit_type(ctx, credit_type)
            if mode == "auto":
                rule = self._top_up_rule(ctx, credit_type)
                assert amount is not None and max_per_month is not None
                _within(amount, rule.min_credits, rule.max_credits, "amount")
                if max_per_month > rule.max_per_month_limit:
                    raise LedgerError(
                        ErrorCode.invalid_command,
                        f"max_per_month is above {rule.max_per_month_limit}",
                    )
            self._trigger(
                ctx,
                self.TopUpConfigured,
                credit_type=credit_type,
                mode=mode,
                threshold=threshold,
                amount=amount,
                max_per_month=max_per_month,
            )
        return {"credit_type": credit_type, "mode": mode}

    def request_top_up(self, ctx: Context, *, credit_type: str, amount: int) -> dict[str, Any]:
        with self._command(ctx):
            self._known_credit_type(ctx, credit_type)
            rule = self._top_up_rule(ctx, credit_type)
            _within(amount, rule.min_credits, rule.max_credits, "amount")
            requested = self._request_top_up(ctx, credit_type, amount, "on_demand")
        return requested

    def fail_top_up(
        self, ctx: Context, *, top_up_id: str, reason: str, recovery_url: str | None
    ) -> dict[str, Any]:
        with self._command(ctx):
            pending = self.pending_top_ups.get(top_up_id)
            if pending is None:
                raise LedgerError(ErrorCode.invalid_command, f"no pending top-up {top_up_id!r}")
            url = recovery_url or ctx.catalog.recovery_url
            self._trigger(
                ctx,
                self.TopUpFailed,
                top_up_id=top_up_id,
                credit_type=pending["credit_type"],
                reason=reason,
                recovery_url=url,
            )
        return {"top_up_id": top_up_id, "recovery_url": url}

    # ---------------------------------------------------------------- decisions

    @contextmanager
    def _command(self, ctx: Context) -> Iterator[None]:
        """Catch up with time, run the decision, then fire low-balance crossings."""
        assert ctx.now >= self.modified_on, "time must not run backwards for an account"
        assert ctx.now.tzinfo is not None
        before = {ct: self.available(ct) for ct in ctx.catalog.credit_types}
        self._catch_up(ctx)
        # Above the threshold before or after catching up (a renewal refills): either counts.
        before = {ct: max(available, self.available(ct)) for ct, available in before.items()}
        yield
        self._fire_low_balance(ctx, before)
        self._check_floor(ctx)

    def _catch_up(self, ctx: Context) -> None:
        for hold in sorted(self.holds.values(), key=lambda h: (h.expires_at, h.hold_id)):
            if hold.expires_at <= ctx.now:
                self._trigger(
                    ctx,
                    self.HoldExpired,
                    hold_id=hold.hold_id,
                    credit_type=hold.credit_type,
                    amount=hold.amount,
                    breakdown=hold.parts,
                    forfeited=self._forfeited(hold.parts),
                )
        scheduled = self.scheduled_plan
        if scheduled is not None and scheduled["effective_at"] <= ctx.now:
            self._switch_plan(ctx, scheduled["plan"], "next_period")
        for credit_type in sorted(self.allocations):
            if self.allocations[credit_type].period_end <= ctx.now:
                self._renew(ctx, credit_type)
        for lot in sorted(self.lots.values(), key=lambda lot: lot.seq):
            if not lot.closed and lot.expires_at is not None and lot.expires_at <= ctx.now:
                self._trigger(
                    ctx,
                    self.LotExpired,
                    lot_id=lot.lot_id,
                    credit_type=lot.credit_type,
                    amount=lot.unheld,
                    expires_at=lot.expires_at,
                )

    def _renew(self, ctx: Context, credit_type: str) -> None:
        current = self.allocations[credit_type]
        rule = ctx.catalog.plans[self.plan].allocations.get(credit_type)
        period = period_containing(current.period, self.anchor_at, ctx.now)
        elapsed = period.index - current.period_index
        assert elapsed >= 1
        previous = self.lots[current.lot_id]
        allocation = rule.amount if rule else 0
        renewal = rule.renewal if rule else "reset"
        carried = 0
        if renewal == "add":
            # Stacked: the old lot stays; each elapsed period adds one allocation.
            amount = allocation * elapsed
        elif renewal == "rollover":
            assert rule is not None and rule.rollover_cap is not None
            # Periods skipped without commands were unused in full, so they carry too.
            carried = min(previous.unheld + (elapsed - 1) * allocation, rule.rollover_cap)
            amount = allocation + carried
        else:
            amount = allocation
        self._trigger(
            ctx,
            self.Renewed,
            **self._allocation(ctx, credit_type, amount, period, renewal),
            reason="period",
            used_in_period=0,
            previous_lot_id=previous.lot_id,
            periods_elapsed=elapsed,
            forfeited=0 if renewal == "add" else previous.unheld,
            carried_over=carried,
        )

    def _switch_plan(self, ctx: Context, plan: str, effective: str) -> None:
        used: dict[str, tuple[str, int]] = {}
        closed = []
        for credit_type, allocation in sorted(self.allocations.items()):
            lot = self.lots[allocation.lot_id]
            if allocation.period_end > ctx.now:
                # Usage in the current period carries to the new plan: an upgrade adds the
                # difference (seed 004: Free → Pro is +7 credits today), it does not refill.
                used_now = allocation.used_before + lot.amount - lot.remaining
                used[credit_type] = (allocation.period, used_now)
            closed.append(
                {"credit_type": credit_type, "lot_id": lot.lot_id, "forfeited": lot.unheld}
            )
        self._trigger(
            ctx,
            self.PlanChanged,
            from_plan=self.plan,
            to_plan=plan,
            effective=effective,
            closed_allocations=closed,
        )
        self._start_plan_allocations(ctx, used=used, reason="plan_changed")

    def _start_plan_allocations(
        self, ctx: Context, *, used: dict[str, tuple[str, int]], reason: str
    ) -> None:
        for credit_type, rule in sorted(ctx.catalog.plans[self.plan].allocations.items()):
            period = period_containing(rule.period, self.anchor_at, ctx.now)
            used_in_period = 0
            if credit_type in used and used[credit_type][0] == rule.period:
                used_in_period = used[credit_type][1]
            amount = max(0, rule.amount - used_in_period)
            self._trigger(
                ctx,
                self.AllocationGranted,
                **self._allocation(ctx, credit_type, amount, period, rule.renewal),
                reason=reason,
                used_in_period=used_in_period,
            )

    def _allocation(
        self, ctx: Context, credit_type: str, amount: int, period: Period, renewal: str
    ) -> dict[str, Any]:
        """The fields every allocation event shares: its lot and its period."""
        repaid_overdraft, repaid_debt = self._repayment(credit_type, amount)
        return {
            "credit_type": credit_type,
            "lot_id": self._next_lot_id(),
            "amount": amount,
            "priority": ctx.catalog.priority_of("allocation"),
            "period": period.kind,
            "period_index": period.index,
            "period_id": period.period_id,
            "period_start": period.start,
            "period_end": period.end,
            "renewal": renewal,
            # Stacked allocations outlive their period; reset and rollover ones end with it.
            "expires_at": None if renewal == "add" else period.end,
            "repaid_overdraft": repaid_overdraft,
            "repaid_debt": repaid_debt,
            "catalog_version": ctx.catalog.version,
        }

    def _grant(
        self,
        ctx: Context,
        credit_type: str,
        amount: int,
        source: LotSource,
        *,
        expires_at: datetime | None = None,
        priority: int | None = None,
        reference: str | None = None,
        payment_reference: str | None = None,
        amount_paid_cents: int | None = None,
        currency: str | None = None,
        pack: str | None = None,
        top_up_id: str | None = None,
        migration_tier: str | None = None,
    ) -> str:
        lot_id = self._next_lot_id()
        repaid_overdraft, repaid_debt = self._repayment(credit_type, amount)
        self._trigger(
            ctx,
            self.Granted,
            lot_id=lot_id,
            credit_type=credit_type,
            amount=amount,
            source=source,
            priority=ctx.catalog.priority_of(source) if priority is None else priority,
            expires_at=expires_at,
            paid=source in PAID_SOURCES,
            payment_reference=payment_reference,
            amount_paid_cents=amount_paid_cents,
            currency=currency,
            pack=pack,
            reference=reference,
            top_up_id=top_up_id,
            migration_tier=migration_tier,
            repaid_overdraft=repaid_overdraft,
            repaid_debt=repaid_debt,
            catalog_version=ctx.catalog.version,
        )
        return lot_id

    def _price(
        self,
        ctx: Context,
        action: str | None,
        credit_type: str | None,
        amount: int | None,
        quantity: int,
    ) -> tuple[str, int, list[str]]:
        catalog = ctx.catalog
        if action is not None:
            if action not in catalog.actions:
                raise LedgerError(ErrorCode.unknown_action, f"no action {action!r} in the catalog")
            ct = catalog.actions[action].credit_type
            unit_cost = catalog.cost_of(self.plan, action)
            tags = list(catalog.actions[action].tags)
        else:
            assert credit_type is not None and amount is not None
            self._known_credit_type(ctx, credit_type)
            ct, unit_cost, tags = credit_type, amount, []
        cost = unit_cost * quantity
        if cost > MAX_AMOUNT:
            raise LedgerError(ErrorCode.invalid_command, f"cost {cost} is above {MAX_AMOUNT}")
        return ct, cost, tags

    def _check_limits(
        self, ctx: Context, action: str | None, resource: str | None, quantity: int
    ) -> None:
        today = utc_day(ctx.now) == self.usage_day
        if action is not None:
            limit = ctx.catalog.daily_limit_of(self.plan, action)
            used = self.action_usage.get(action, 0) if today else 0
            if limit is not None and used + quantity > limit:
                raise LedgerError(
                    ErrorCode.daily_limit_reached,
                    f"{action}: {used} of {limit} used today (UTC)",
                )
        limit = ctx.catalog.plans[self.plan].resource_daily_limit
        if resource is not None and limit is not None:
            used = self.resource_usage.get(resource, 0) if today else 0
            if used + quantity > limit:
                raise LedgerError(
                    ErrorCode.resource_limit_reached,
                    f"{resource}: {used} of {limit} used today (UTC)",
                )

    def _take(
        self, ctx: Context, credit_type: str, amount: int, *, overdraft: bool
    ) -> tuple[Breakdown, int]:
        """Draw `amount` in burn order from the lots the plan may spend; never past the floor."""
        if amount == 0:
            return [], 0
        may_spend_paid = ctx.catalog.may_spend_purchased(self.plan, credit_type)
        lots = [
            lot
            for lot in self._lots_of(credit_type)
            if lot.unheld > 0 and (may_spend_paid or not lot.paid)
        ]
        spendable = (
            sum(lot.unheld for lot in lots)
            - self.overdraft.get(credit_type, 0)
            - self.debt.get(credit_type, 0)
        )
        floor = ctx.catalog.credit_types[credit_type].overdraft_floor if overdraft else 0
        if spendable - amount < floor:
            frozen = "" if may_spend_paid else f" (plan {self.plan!r} may not spend purchased)"
            raise LedgerError(
                ErrorCode.insufficient_credits,
                f"{credit_type}: needs {amount}, {spendable} spendable{frozen}",
            )
        breakdown, shortfall = draw(lots, amount)
        assert overdraft or shortfall == 0
        return breakdown, shortfall

    def _open_hold(self, hold_id: str) -> Hold:
        hold = self.holds.get(hold_id)
        if hold is not None:
            return hold
        if self.closed_holds.get(hold_id) == "expired":
            raise LedgerError(ErrorCode.hold_expired, f"hold {hold_id!r} expired")
        raise LedgerError(ErrorCode.hold_not_found, f"no open hold {hold_id!r}")

    def _forfeited(self, released: Breakdown) -> int:
        """What a release gives back to lots that closed meanwhile: it is lost, not returned."""
        return sum(part["amount"] for part in released if self.lots[part["lot_id"]].closed)

    def _price_pack(
        self, ctx: Context, pack_name: str, amount_paid: int, currency: str
    ) -> tuple[str, int, datetime | None]:
        pack = ctx.catalog.packs.get(pack_name)
        if pack is None:
            raise LedgerError(ErrorCode.invalid_command, f"no pack {pack_name!r} in the catalog")
        if not ctx.catalog.may_buy_pack(self.plan, pack):
            raise LedgerError(
                ErrorCode.not_eligible, f"plan {self.plan!r} may not buy pack {pack_name!r}"
            )
        _expect_payment(
            {"price_cents": pack.price_cents, "currency": ctx.catalog.pack_currency(pack)},
            amount_paid,
            currency,
        )
        expires_at = None
        if pack.expires_after_days is not None:
            expires_at = ctx.now + timedelta(days=pack.expires_after_days)
        return pack.credit_type, pack.amount, expires_at

    def _open_top_up(self, top_up_id: str) -> dict[str, Any]:
        """A top-up awaiting payment: requested, or failed and recoverable."""
        return self.pending_top_ups.get(top_up_id) or self.failed_top_ups[top_up_id]

    def _price_top_up(self, top_up_id: str, credit_type: str, amount: int | None) -> int:
        pending = self.pending_top_ups.get(top_up_id) or self.failed_top_ups.get(top_up_id)
        if pending is None or pending["credit_type"] != credit_type:
            raise LedgerError(
                ErrorCode.invalid_command, f"no pending {credit_type} top-up {top_up_id!r}"
            )
        if amount is not None and amount != pending["amount"]:
            raise LedgerError(
                ErrorCode.invalid_command, f"amount is not the {pending['amount']} requested"
            )
        return int(pending["amount"])

    def _price_amount(
        self,
        ctx: Context,
        credit_type: str,
        amount: int | None,
        amount_paid: int,
        currency: str,
    ) -> int:
        self._known_credit_type(ctx, credit_type)
        rate = ctx.catalog.plans[self.plan].purchase.get(credit_type)
        if rate is None or not ctx.catalog.may_buy(self.plan, credit_type):
            raise LedgerError(
                ErrorCode.not_eligible, f"plan {self.plan!r} may not buy {credit_type}"
            )
        plan_currency = ctx.catalog.currency_of(self.plan)
        if currency != plan_currency:
            raise LedgerError(ErrorCode.invalid_command, f"currency is not {plan_currency}")
        _within(amount_paid, rate.min_cents, rate.max_cents, "amount_paid")
        credits = amount_paid * rate.credits // rate.per_cents
        if amount is not None and amount != credits:
            raise LedgerError(
                ErrorCode.invalid_command,
                f"amount is not the {credits} credits {amount_paid} buys on plan {self.plan!r}",
            )
        return credits

    def _revocable_lot(self, payment_reference: str | None, grant_id: str | None) -> Lot:
        lot_id = grant_id if grant_id is not None else self.purchases.get(payment_reference or "")
        lot = self.lots.get(lot_id or "")
        if lot is None or lot.source == "allocation":
            target = grant_id if grant_id is not None else payment_reference
            raise LedgerError(ErrorCode.invalid_command, f"nothing to revoke for {target!r}")
        return lot

    def _top_up_rule(self, ctx: Context, credit_type: str) -> TopUp:
        rule = ctx.catalog.plans[self.plan].top_up.get(credit_type)
        if rule is None:
            raise LedgerError(
                ErrorCode.not_eligible, f"plan {self.plan!r} has no top-up for {credit_type}"
            )
        return rule

    def _request_top_up(
        self, ctx: Context, credit_type: str, amount: int, trigger: str
    ) -> dict[str, Any]:
        rule = ctx.catalog.plans[self.plan].top_up[credit_type]
        top_up_id = f"tu-{self.top_up_seq + 1}"
        requested = {
            "top_up_id": top_up_id,
            "credit_type": credit_type,
            "amount": amount,
            "price_cents": amount * rule.price_per_credit_cents,
            "currency": ctx.catalog.currency_of(self.plan),
            "trigger": trigger,
            "idempotency_key": f"{self.id}:{top_up_id}",
        }
        self._trigger(
            ctx,
            self.TopUpRequested,
            month=calendar_month(ctx.now),
            catalog_version=ctx.catalog.version,
            **requested,
        )
        return requested

    def _after_spend(self, ctx: Context, credit_type: str) -> None:
        """Auto top-up: a spend left the balance below the threshold (seed 001)."""
        settings = self._auto_top_up_settings(ctx, credit_type)
        if settings is None or self.available(credit_type) >= settings["threshold"]:
            return
        if any(
            p["credit_type"] == credit_type and p["trigger"] == "auto"
            for p in self.pending_top_ups.values()
        ):
            return
        counted = self.auto_top_ups.get(credit_type)
        month = calendar_month(ctx.now)
        if counted and counted["month"] == month and counted["count"] >= settings["max_per_month"]:
            return
        self._request_top_up(ctx, credit_type, settings["amount"], "auto")

    def _auto_top_up_settings(self, ctx: Context, credit_type: str) -> dict[str, Any] | None:
        rule = ctx.catalog.plans[self.plan].top_up.get(credit_type)
        if rule is None:
            return None
        configured = self.top_up_settings.get(credit_type)
        if configured is not None:
            return configured if configured["mode"] == "auto" else None
        if rule.auto is None:
            return None
        return {"mode": "auto", **rule.auto.model_dump()}

    def _fire_low_balance(self, ctx: Context, before: dict[str, int]) -> None:
        for credit_type, spec in sorted(ctx.catalog.credit_types.items()):
            threshold = spec.low_balance_threshold
            if threshold is None or credit_type in self.low_balance_fired:
                continue
            available = self.available(credit_type)
            if before[credit_type] > threshold >= available:
                self._trigger(
                    ctx,
                    self.LowBalance,
                    credit_type=credit_type,
                    available=available,
                    threshold=threshold,
                )

    def _check_floor(self, ctx: Context) -> None:
        for credit_type, spec in ctx.catalog.credit_types.items():
            # Refund debt may take an account below the floor: the money left, not a spend.
            above = self.available(credit_type) + self.debt.get(credit_type, 0)
            assert above >= spec.overdraft_floor, (credit_type, above, spec.overdraft_floor)

    def _known_credit_type(self, ctx: Context, credit_type: str) -> None:
        if credit_type not in ctx.catalog.credit_types:
            raise LedgerError(
                ErrorCode.invalid_command, f"no credit type {credit_type!r} in the catalog"
            )

    def _repayment(self, credit_type: str, amount: int) -> tuple[int, int]:
        """What new credits repay first: the overdraft, then refund debt."""
        overdraft = min(self.overdraft.get(credit_type, 0), amount)
        debt = min(self.debt.get(credit_type, 0), amount - overdraft)
        return overdraft, debt

    def _next_lot_id(self) -> str:
        return f"lot-{self.lot_seq + 1}"

    def _trigger(self, ctx: Context, event_class: type[E], **kwargs: Any) -> None:
        self.trigger_event(event_class, timestamp=ctx.now, command_id=ctx.command_id, **kwargs)

    # ---------------------------------------------------------------- evolving

    def _add_lot(
        self,
        *,
        lot_id: str,
        credit_type: str,
        source: str,
        amount: int,
        priority: int,
        at: datetime,
        expires_at: datetime | None,
        payment_reference: str | None,
        repaid_overdraft: int,
        repaid_debt: int,
    ) -> None:
        self.lot_seq += 1
        assert lot_id == f"lot-{self.lot_seq}" and lot_id not in self.lots
        self.lots[lot_id] = Lot(
            lot_id=lot_id,
            seq=self.lot_seq,
            credit_type=credit_type,
            source=source,
            amount=amount,
            remaining=amount - repaid_overdraft - repaid_debt,
            held=0,
            priority=priority,
            effective_at=at,
            expires_at=expires_at,
            paid=source in PAID_SOURCES,
            payment_reference=payment_reference,
        )
        self._add(self.overdraft, credit_type, -repaid_overdraft)
        self._add(self.debt, credit_type, -repaid_debt)

    def _start_allocation(self, e: Account.AllocationGranted) -> None:
        self._add_lot(
            lot_id=e.lot_id,
            credit_type=e.credit_type,
            source="allocation",
            amount=e.amount,
            priority=e.priority,
            at=e.timestamp,
            expires_at=e.expires_at,
            payment_reference=None,
            repaid_overdraft=e.repaid_overdraft,
            repaid_debt=e.repaid_debt,
        )
        previous = self.allocations.get(e.credit_type)
        self.allocations[e.credit_type] = AllocationState(
            credit_type=e.credit_type,
            period=e.period,  # type: ignore[arg-type]
            period_index=e.period_index,
            period_id=e.period_id,
            period_start=e.period_start,
            period_end=e.period_end,
            renewal=e.renewal,
            lot_id=e.lot_id,
            used_before=e.used_in_period,
        )
        if previous is not None:
            self._prune(previous.lot_id)

    def _close_lot(self, lot_id: str, forfeited: int) -> None:
        lot = self.lots[lot_id]
        assert forfeited == lot.unheld, (lot, forfeited)
        lot.remaining -= forfeited
        lot.closed = True
        self._prune(lot_id)

    def _settle_hold(
        self, hold_id: str, captured: Breakdown, released: Breakdown, status: str
    ) -> None:
        hold = self.holds.pop(hold_id)
        assert total(captured) + total(released) == hold.amount
        for part in captured:
            lot = self.lots[part["lot_id"]]
            lot.held -= part["amount"]
            lot.remaining -= part["amount"]
        for part in released:
            lot = self.lots[part["lot_id"]]
            lot.held -= part["amount"]
            if lot.closed:
                lot.remaining -= part["amount"]
        for part in captured + released:
            self._prune(part["lot_id"])
        self.closed_holds[hold_id] = status
        while len(self.closed_holds) > CLOSED_HOLDS_REMEMBERED:
            del self.closed_holds[next(iter(self.closed_holds))]

    def _prune(self, lot_id: str) -> None:
        """Forget spent allocation lots (one a day would pile up); other lots stay revocable."""
        lot = self.lots.get(lot_id)
        if lot is None or lot.source != "allocation" or lot.remaining != 0:
            return
        current = self.allocations.get(lot.credit_type)
        if current is None or current.lot_id != lot_id:
            del self.lots[lot_id]

    def _count_usage(
        self, day: str, action: str | None, resource: str | None, quantity: int
    ) -> None:
        if day != self.usage_day:
            self.usage_day = day
            self.action_usage = {}
            self.resource_usage = {}
        if action is not None:
            self._add(self.action_usage, action, quantity)
        if resource is not None:
            self._add(self.resource_usage, resource, quantity)

    @staticmethod
    def _add(counters: dict[str, int], key: str, delta: int) -> None:
        value = counters.get(key, 0) + delta
        assert value >= 0, (key, value)
        if value:
            counters[key] = value
        else:
            counters.pop(key, None)

    def _rearm_low_balance(self) -> None:
        for credit_type, threshold in list(self.low_balance_fired.items()):
            if self.available(credit_type) > threshold:
                del self.low_balance_fired[credit_type]

    def _check_invariants(self) -> None:
        held: dict[str, int] = {}
        for hold in self.holds.values():
            assert total(hold.parts) == hold.amount >= 0, hold
            for part in hold.parts:
                held[part["lot_id"]] = held.get(part["lot_id"], 0) + part["amount"]
        for lot_id, lot in self.lots.items():
            lot.check()
            assert lot.held == held.get(lot_id, 0), (lot, held.get(lot_id, 0))
        assert all(v > 0 for v in self.overdraft.values())
        assert all(v > 0 for v in self.debt.values())

    def _lots_of(self, credit_type: str) -> Iterator[Lot]:
        return (lot for lot in self.lots.values() if lot.credit_type == credit_type)


def _split(parts: Breakdown, amount: int) -> tuple[Breakdown, Breakdown]:
    """The first `amount` of a hold's parts (captured, in burn order) and the rest (released)."""
    captured: Breakdown = []
    released: Breakdown = []
    left = amount
    for part in parts:
        take = min(part["amount"], left)
        left -= take
        if take:
            captured.append({"lot_id": part["lot_id"], "amount": take})
        if part["amount"] - take:
            released.append({"lot_id": part["lot_id"], "amount": part["amount"] - take})
    return captured, released


def _within(value: int, minimum: int, maximum: int | None, field: str) -> None:
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum}..{maximum}" if maximum is not None else f"at least {minimum}"
        raise LedgerError(ErrorCode.invalid_command, f"{field} {value} is outside {bounds}")


def _expect_payment(price: dict[str, Any], amount_paid: int, currency: str) -> None:
    if (amount_paid, currency) != (price["price_cents"], price["currency"]):
        raise LedgerError(
            ErrorCode.invalid_command,
            f"amount_paid {amount_paid} {currency} is not the price "
            f"{price['price_cents']} {price['currency']}",
        )
