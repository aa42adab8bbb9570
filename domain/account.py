"""The account aggregate: one stream per caller's account id, holding lots of every credit type.

The account is one consistency boundary; what it holds are value objects with their own rules
(domain/lots.py, holds.py, allocations.py, top_ups.py, usage.py, owed.py), priced by
domain/pricing.py, changed only by the events of domain/events.py.

Commands decide (reading the catalog and `now` from a `Context`) and trigger events; events
apply (never reading the catalog), so replaying a stream needs nothing but the stream. Every
command starts by catching up with time (expired holds, a scheduled plan change, due renewals,
expired lots), so a command arriving after a boundary sees the account as of `now`. A command
that raises `LedgerError` may already have triggered catch-up events: the caller must then
discard the aggregate (the service decides on a copy), which is what makes a refusal change
nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

from domain import events, pricing, results, snapshots
from domain.account_rules import Context
from domain.allocations import AllocationState
from domain.catalog import LotSource
from domain.errors import ErrorCode, LedgerError
from domain.hold_commands import HoldCommands
from domain.periods import period_containing, utc_day
from domain.usage import effective_limit

# Resources with a limit of their own, per account: a bound on the account's state.
MAX_RESOURCE_LIMITS = 1000

# Context is imported from here by the service, AllocationState by the v1 snapshot
# transcodings of infra/event_mapper.py.
__all__ = ["Account", "AllocationState", "Context"]


class Account(HoldCommands):
    # The events and the snapshot by the names their stored topics use
    # (`domain.account:Account.Consumed`): see domain/events.py. Declared as aliases for type
    # checkers only: an annotation in the class body would make eventsourcing see a field.
    if TYPE_CHECKING:
        Event: TypeAlias = events.Event
        Opened: TypeAlias = events.Opened
        AllocationGranted: TypeAlias = events.AllocationGranted
        Renewed: TypeAlias = events.Renewed
        Consumed: TypeAlias = events.Consumed
        Reserved: TypeAlias = events.Reserved
        Captured: TypeAlias = events.Captured
        PartCaptured: TypeAlias = events.PartCaptured
        HoldExtended: TypeAlias = events.HoldExtended
        Released: TypeAlias = events.Released
        HoldExpired: TypeAlias = events.HoldExpired
        Granted: TypeAlias = events.Granted
        Revoked: TypeAlias = events.Revoked
        LotExpired: TypeAlias = events.LotExpired
        LowBalance: TypeAlias = events.LowBalance
        TopUpConfigured: TypeAlias = events.TopUpConfigured
        ResourceLimitSet: TypeAlias = events.ResourceLimitSet
        TopUpRequested: TypeAlias = events.TopUpRequested
        TopUpCompleted: TypeAlias = events.TopUpCompleted
        TopUpFailed: TypeAlias = events.TopUpFailed
        PlanChangeScheduled: TypeAlias = events.PlanChangeScheduled
        PlanChanged: TypeAlias = events.PlanChanged
        Snapshot: TypeAlias = snapshots.AccountSnapshot
    else:
        Event = events.Event
        Opened = events.Opened
        AllocationGranted = events.AllocationGranted
        Renewed = events.Renewed
        Consumed = events.Consumed
        Reserved = events.Reserved
        Captured = events.Captured
        PartCaptured = events.PartCaptured
        HoldExtended = events.HoldExtended
        Released = events.Released
        HoldExpired = events.HoldExpired
        Granted = events.Granted
        Revoked = events.Revoked
        LotExpired = events.LotExpired
        LowBalance = events.LowBalance
        TopUpConfigured = events.TopUpConfigured
        ResourceLimitSet = events.ResourceLimitSet
        TopUpRequested = events.TopUpRequested
        TopUpCompleted = events.TopUpCompleted
        TopUpFailed = events.TopUpFailed
        PlanChangeScheduled = events.PlanChangeScheduled
        PlanChanged = events.PlanChanged
        Snapshot = snapshots.AccountSnapshot

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
            expires_at = _after_days(ctx.now, trial.expires_after_days)
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
    ) -> results.Consumed:
        with self._command(ctx):
            price = self._priced_use(
                ctx,
                action=action,
                credit_type=credit_type,
                amount=amount,
                quantity=quantity,
                resource=resource,
            )
            breakdown, overdraft = self._take(ctx, price.credit_type, price.amount, overdraft=True)
            self._trigger(
                ctx,
                self.Consumed,
                action=action,
                credit_type=price.credit_type,
                quantity=quantity,
                amount=price.amount,
                tags=price.tags,
                resource=resource,
                metadata=dict(metadata),
                breakdown=breakdown,
                overdraft_added=overdraft,
                day=utc_day(ctx.now),
                catalog_version=ctx.catalog.version,
            )
            self._after_spend(ctx, price.credit_type)
        return results.Consumed(
            price.credit_type, action, quantity, price.amount, breakdown, overdraft
        )

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
    ) -> results.Granted:
        with self._command(ctx):
            ctx.catalog.require_credit_type(credit_type)
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
        return results.Granted(lot_id, credit_type, amount)

    def migrate(self, ctx: Context, *, tier: str) -> results.Granted:
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
        return results.Granted(lot_id, migration.credit_type, amount)

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
    ) -> results.Purchased:
        """Credits for a payment that succeeded: a pack, an amount at the plan's rate, a top-up.

        Eligibility and price are checked again although checkout checked them: the ledger is
        the authority, and a refused paid purchase must be refunded by the payment side.
        """
        with self._command(ctx):
            if payment_reference in self.purchases:
                raise LedgerError(
                    ErrorCode.invalid_command,
                    f"payment_reference {payment_reference!r} is already recorded",
                )
            expires_at = None
            source: LotSource = "purchase"
            if pack is not None:
                offer = pricing.pack_offer(ctx.catalog, self.plan, pack)
                pricing.expect_payment(offer.price, amount_paid, currency)
                ct, credits = offer.credit_type, offer.credits
                expires_at = _after_days(ctx.now, offer.expires_after_days)
            elif top_up_id is not None:
                assert credit_type is not None
                request = self.top_ups.settled_by(top_up_id, credit_type, amount)
                price = pricing.Money(request.price_cents, request.currency)
                pricing.expect_payment(price, amount_paid, currency)
                ct, credits, source = credit_type, request.amount, "top_up"
            else:
                assert credit_type is not None
                ct = credit_type
                credits = pricing.credits_paid(
                    ctx.catalog, self.plan, credit_type, amount_paid, currency, expected=amount
                )
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
        return results.Purchased(lot_id, ct, credits, source)

    def revoke(
        self,
        ctx: Context,
        *,
        payment_reference: str | None,
        grant_id: str | None,
        amount: int | None,
        reason: str,
    ) -> results.Revoked:
        """A refund, chargeback or claw-back: the lot's unspent part goes first; what was
        already spent is forgiven or becomes debt, as the credit type's policy says."""
        with self._command(ctx):
            lot = self.revocable_lot(payment_reference, grant_id)
            if lot.revocable == 0:
                raise LedgerError(ErrorCode.invalid_command, f"lot {lot.lot_id} is fully revoked")
            revoked = lot.revocable if amount is None else amount
            if revoked > lot.revocable:
                raise LedgerError(
                    ErrorCode.invalid_command,
                    f"amount is above the {lot.revocable} left to revoke",
                )
            unspent = min(revoked, lot.unheld)
            spent = revoked - unspent
            policy = ctx.catalog.credit_types[lot.credit_type].refund_policy
            closes = revoked == lot.revocable
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
        return results.Revoked(lot.lot_id, lot.credit_type, revoked, unspent, policy, spent)

    def renew(self, ctx: Context, *, period_id: str) -> results.Renewed:
        """Renew what is due. Idempotent: a period already started renews nothing again."""
        if period_id > ctx.now.date().isoformat():
            raise LedgerError(ErrorCode.invalid_command, f"period {period_id} has not started")
        triggered = self._catch_up_only(ctx)
        renewed = [e.credit_type for e in triggered if isinstance(e, self.Renewed)]
        return results.Renewed(period_id, renewed)

    def expire(self, ctx: Context) -> results.Expired:
        """The scheduler's tick: whatever time alone changes (see `next_due_at`)."""
        return results.Expired([type(e).__name__ for e in self._catch_up_only(ctx)])

    def change_plan(
        self, ctx: Context, *, plan: str, effective: str
    ) -> results.PlanChanged | results.PlanChangeScheduled:
        with self._command(ctx):
            if plan not in ctx.catalog.plans:
                raise LedgerError(ErrorCode.unknown_plan, f"no plan {plan!r} in the catalog")
            if plan == self.plan and self.scheduled_plan is None:
                return results.PlanChanged(plan, changed=False)
            if effective == "next_period":
                # Plans change with the billing month, whatever the allocations' periods.
                effective_at = period_containing("month", self.anchor_at, ctx.now).end
                self._trigger(ctx, self.PlanChangeScheduled, plan=plan, effective_at=effective_at)
                return results.PlanChangeScheduled(plan, effective_at)
            self._switch_plan(ctx, plan, effective)
        return results.PlanChanged(plan, changed=True)

    def configure_top_up(
        self,
        ctx: Context,
        *,
        credit_type: str,
        mode: str,
        threshold: int | None,
        amount: int | None,
        max_per_month: int | None,
    ) -> results.TopUpConfigured:
        with self._command(ctx):
            ctx.catalog.require_credit_type(credit_type)
            if mode == "auto":
                rule = pricing.top_up_rule(ctx.catalog, self.plan, credit_type)
                assert amount is not None and max_per_month is not None
                pricing.within(amount, rule.min_credits, rule.max_credits, "amount")
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
        return results.TopUpConfigured(credit_type, mode)

    def set_resource_limit(
        self, ctx: Context, *, resource: str, daily_limit: int | None
    ) -> results.ResourceLimitSet:
        """The account's own daily limit on one resource, at most the plan's cap (a plan
        without a cap takes any); null clears it."""
        with self._command(ctx):
            plan_limit = ctx.catalog.plans[self.plan].resource_daily_limit
            if daily_limit is not None and plan_limit is not None and daily_limit > plan_limit:
                raise LedgerError(
                    ErrorCode.limit_above_plan,
                    f"{resource}: daily_limit {daily_limit} is above the {plan_limit} a day "
                    f"plan {self.plan!r} allows",
                )
            current = self.resource_limits.get(resource)
            adding = current is None and daily_limit is not None
            if adding and len(self.resource_limits) >= MAX_RESOURCE_LIMITS:
                raise LedgerError(
                    ErrorCode.invalid_command,
                    f"at most {MAX_RESOURCE_LIMITS} resources may have a limit of their own",
                )
            changed = current != daily_limit
            if changed:
                self._trigger(
                    ctx,
                    self.ResourceLimitSet,
                    resource=resource,
                    daily_limit=daily_limit,
                    plan_limit=plan_limit,
                )
        return results.ResourceLimitSet(
            resource,
            daily_limit,
            plan_limit,
            effective_limit(daily_limit, plan_limit),
            changed,
        )

    def request_top_up(
        self, ctx: Context, *, credit_type: str, amount: int
    ) -> results.TopUpRequested:
        """Credits to be charged to the saved card; they come with the purchase that pays."""
        with self._command(ctx):
            ctx.catalog.require_credit_type(credit_type)
            rule = pricing.top_up_rule(ctx.catalog, self.plan, credit_type)
            pricing.within(amount, rule.min_credits, rule.max_credits, "amount")
            requested = self._request_top_up(ctx, credit_type, amount, "on_demand")
        return requested

    def fail_top_up(
        self, ctx: Context, *, top_up_id: str, reason: str, recovery_url: str | None
    ) -> results.TopUpFailed:
        with self._command(ctx):
            pending = self.top_ups.pending.get(top_up_id)
            if pending is None:
                raise LedgerError(ErrorCode.invalid_command, f"no pending top-up {top_up_id!r}")
            url = recovery_url or ctx.catalog.recovery_url
            self._trigger(
                ctx,
                self.TopUpFailed,
                top_up_id=top_up_id,
                credit_type=pending.credit_type,
                reason=reason,
                recovery_url=url,
            )
        return results.TopUpFailed(top_up_id, url)


def _after_days(now: datetime, days: int | None) -> datetime | None:
    return None if days is None else now + timedelta(days=days)
