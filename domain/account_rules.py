"""The rules around every account command: catching up with time before it, and after it the
auto top-ups, low-balance alerts and the overdraft floor; and the two ways credits move, granted
into a new lot or taken from the lots in burn order.

`AccountRules` is the middle layer of the account aggregate: `AccountState` (what it holds)
below, `Account` (the commands, domain/account.py) above. Nothing here is called from outside.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, TypeVar

from eventsourcing.domain import BaseAggregate

from domain import events, pricing, results
from domain.account_state import AccountState
from domain.allocations import renewal_terms, starting_amount
from domain.catalog import PAID_SOURCES, Catalog, LotSource
from domain.errors import ErrorCode, LedgerError
from domain.fields import Breakdown
from domain.holds import Hold
from domain.lots import draw
from domain.periods import Period, PeriodKind, calendar_month, period_containing, utc_day
from domain.usage import effective_limit

E = TypeVar("E", bound=events.Event)


@dataclass(frozen=True)
class Context:
    """What a decision may read besides the account: the catalog, the time, the command."""

    catalog: Catalog
    now: datetime
    command_id: str | None = None


class AllocationFields(TypedDict):
    """What `AllocationGranted` and `Renewed` share: the new lot and its period."""

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
    catalog_version: str
    plan: str


class AccountRules(AccountState, BaseAggregate[str]):
    @contextmanager
    def _command(self, ctx: Context) -> Iterator[None]:
        """Catch up with time, run the decision, then fire low-balance crossings."""
        assert ctx.now >= self.modified_on, "time must not run backwards for an account"
        assert ctx.now.tzinfo is not None
        before = self.available_per_credit_type(ctx.catalog.credit_types)
        mark = len(self.pending_events)
        self._catch_up(ctx)
        if len(self.pending_events) > mark:
            # Above the threshold before or after catching up (a renewal refills): either counts.
            caught_up = self.available_per_credit_type(ctx.catalog.credit_types)
            before = {ct: max(available, caught_up[ct]) for ct, available in before.items()}
        yield
        # Low-balance alerts change no balance: one reading serves both.
        after = self.available_per_credit_type(ctx.catalog.credit_types)
        self._fire_low_balance(ctx, before, after)
        self._check_floor(ctx, after)

    def _catch_up_only(self, ctx: Context) -> list[events.Event]:
        """A command that only catches up: the events it triggered."""
        mark = len(self.pending_events)
        with self._command(ctx):
            pass
        return [e for e in self.pending_events[mark:] if isinstance(e, events.Event)]

    def _catch_up(self, ctx: Context) -> None:
        """Expired holds, a scheduled plan change that is due, renewals, expired lots."""
        for hold in self.holds.expiring(ctx.now):
            self._release(ctx, hold, events.HoldExpired)
        if self.scheduled_plan is not None and self.scheduled_plan.effective_at <= ctx.now:
            self._switch_plan(ctx, self.scheduled_plan.plan, "next_period")
        for credit_type in self.allocations.due(ctx.now):
            self._renew(ctx, credit_type)
        for lot in self.lots.expiring(ctx.now):
            self._trigger(
                ctx,
                events.LotExpired,
                lot_id=lot.lot_id,
                credit_type=lot.credit_type,
                amount=lot.unheld,
                expires_at=lot.expires_at,
            )

    def _renew(self, ctx: Context, credit_type: str) -> None:
        current = self.allocations[credit_type]
        rule = ctx.catalog.plans[self.plan].allocations.get(credit_type)
        period = period_containing(current.period, self.anchor_at, ctx.now)
        previous = self.lots[current.lot_id]
        terms = renewal_terms(current, rule, period, previous.unheld)
        self._trigger(
            ctx,
            events.Renewed,
            **self._allocation(ctx, credit_type, terms.amount, period, terms.renewal),
            reason="period",
            used_in_period=0,
            previous_lot_id=previous.lot_id,
            periods_elapsed=terms.periods_elapsed,
            forfeited=terms.forfeited,
            carried_over=terms.carried_over,
        )

    def _switch_plan(self, ctx: Context, plan: str, effective: str) -> None:
        """The old plan's allocation lots close (their unheld rest lost); the new plan's start,
        less what was used this period: an upgrade adds the difference, it does not refill."""
        used: dict[str, tuple[PeriodKind, int]] = {}
        closed = []
        for credit_type, allocation in sorted(self.allocations.items()):
            lot = self.lots[allocation.lot_id]
            if allocation.period_end > ctx.now:
                used[credit_type] = (allocation.period, allocation.used(lot.amount, lot.remaining))
            closed.append(
                {"credit_type": credit_type, "lot_id": lot.lot_id, "forfeited": lot.unheld}
            )
        self._trigger(
            ctx,
            events.PlanChanged,
            from_plan=self.plan,
            to_plan=plan,
            effective=effective,
            closed_allocations=closed,
        )
        self._start_plan_allocations(ctx, used=used, reason="plan_changed")

    def _start_plan_allocations(
        self, ctx: Context, *, used: dict[str, tuple[PeriodKind, int]], reason: str
    ) -> None:
        for credit_type, rule in sorted(ctx.catalog.plans[self.plan].allocations.items()):
            period = period_containing(rule.period, self.anchor_at, ctx.now)
            amount, used_in_period = starting_amount(rule, used.get(credit_type))
            self._trigger(
                ctx,
                events.AllocationGranted,
                **self._allocation(ctx, credit_type, amount, period, rule.renewal),
                reason=reason,
                used_in_period=used_in_period,
            )

    def _allocation(
        self, ctx: Context, credit_type: str, amount: int, period: Period, renewal: str
    ) -> AllocationFields:
        """The fields every allocation event shares: its lot and its period."""
        repaid_overdraft, repaid_debt = self.owed.repayment(credit_type, amount)
        return {
            "credit_type": credit_type,
            "lot_id": self.lots.next_id(),
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
            "plan": self.plan,
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
        lot_id = self.lots.next_id()
        repaid_overdraft, repaid_debt = self.owed.repayment(credit_type, amount)
        self._trigger(
            ctx,
            events.Granted,
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

    def _priced_use(
        self,
        ctx: Context,
        *,
        action: str | None,
        credit_type: str | None,
        amount: int | None,
        quantity: int,
        resource: str | None,
    ) -> pricing.UsePrice:
        """What a use (a consume, a reserve) costs on this plan, once its limits allow it."""
        price = pricing.use_price(
            ctx.catalog,
            self.plan,
            action=action,
            credit_type=credit_type,
            amount=amount,
            quantity=quantity,
        )
        self._check_limits(ctx, action, resource, quantity)
        return price

    def _check_limits(
        self, ctx: Context, action: str | None, resource: str | None, quantity: int
    ) -> None:
        plan_limit = ctx.catalog.plans[self.plan].resource_daily_limit
        own = None if resource is None else self.resource_limits.get(resource)
        limit = effective_limit(own, plan_limit)
        self.usage.check_limits(
            utc_day(ctx.now),
            action=action,
            action_limit=None if action is None else ctx.catalog.daily_limit_of(self.plan, action),
            resource=resource,
            resource_limit=limit,
            quantity=quantity,
            account_limit=own is not None and limit == own,
        )

    def _take(
        self, ctx: Context, credit_type: str, amount: int, *, overdraft: bool
    ) -> tuple[Breakdown, int]:
        """Draw `amount` in burn order from the lots the plan may spend; never past the floor."""
        if amount == 0:
            return [], 0
        paid_too = ctx.catalog.may_spend_purchased(self.plan, credit_type)
        lots = self.lots.spendable(credit_type, paid_too=paid_too)
        spendable = self.spendable(credit_type, paid_too)
        floor = ctx.catalog.credit_types[credit_type].overdraft_floor if overdraft else 0
        if spendable - amount < floor:
            frozen = "" if paid_too else f" (plan {self.plan!r} may not spend purchased)"
            raise LedgerError(
                ErrorCode.insufficient_credits,
                f"{credit_type}: needs {amount}, {spendable} spendable{frozen}",
            )
        breakdown, shortfall = draw(lots, amount)
        assert overdraft or shortfall == 0
        return breakdown, shortfall

    def _release(self, ctx: Context, hold: Hold, event: type[events.Released]) -> None:
        """All of a hold back to its lots (`Released`, `HoldExpired`)."""
        self._trigger(
            ctx,
            event,
            hold_id=hold.hold_id,
            credit_type=hold.credit_type,
            amount=hold.amount,
            breakdown=hold.parts,
            forfeited=self.lots.forfeited(hold.parts),
        )

    def _request_top_up(
        self, ctx: Context, credit_type: str, amount: int, trigger: str
    ) -> results.TopUpRequested:
        rule = pricing.top_up_rule(ctx.catalog, self.plan, credit_type)
        price = pricing.top_up_price(ctx.catalog, self.plan, rule, amount)
        top_up_id = self.top_ups.next_id()
        requested = results.TopUpRequested(
            top_up_id=top_up_id,
            credit_type=credit_type,
            amount=amount,
            price_cents=price.cents,
            currency=price.currency,
            trigger=trigger,
            idempotency_key=f"{self.id}:{top_up_id}",
        )
        self._trigger(
            ctx,
            events.TopUpRequested,
            month=calendar_month(ctx.now),
            catalog_version=ctx.catalog.version,
            **requested.to_json(),
        )
        return requested

    def _after_spend(self, ctx: Context, credit_type: str) -> None:
        """Auto top-up: a spend left the balance below the threshold (seed 001)."""
        rule = ctx.catalog.plans[self.plan].top_up.get(credit_type)
        settings = self.top_ups.auto_settings(credit_type, rule)
        if settings is None or settings.threshold is None or settings.amount is None:
            return
        if self.available(credit_type) >= settings.threshold:
            return
        if self.top_ups.wants_auto(credit_type, settings, calendar_month(ctx.now)):
            self._request_top_up(ctx, credit_type, settings.amount, "auto")

    def _fire_low_balance(
        self, ctx: Context, before: dict[str, int], after: dict[str, int]
    ) -> None:
        for credit_type, spec in sorted(ctx.catalog.credit_types.items()):
            threshold = spec.low_balance_threshold
            if threshold is None or credit_type in self.low_balance_fired:
                continue
            available = after[credit_type]
            if before[credit_type] > threshold >= available:
                self._trigger(
                    ctx,
                    events.LowBalance,
                    credit_type=credit_type,
                    available=available,
                    threshold=threshold,
                )

    def _check_floor(self, ctx: Context, available: dict[str, int]) -> None:
        """Never below the overdraft floor; refund debt may (the money left, not a spend)."""
        for credit_type, spec in ctx.catalog.credit_types.items():
            above = available[credit_type] + self.owed.debt.get(credit_type, 0)
            assert above >= spec.overdraft_floor, (credit_type, above, spec.overdraft_floor)

    def _trigger(self, ctx: Context, event_class: type[E], **kwargs: Any) -> None:
        self.trigger_event(event_class, timestamp=ctx.now, command_id=ctx.command_id, **kwargs)
