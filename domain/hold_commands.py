"""The account's commands on holds: reserve, capture (all at once, or in parts while a streaming
call runs), release, extend. Part of `Account` (domain/account.py), kept apart because holds
are one concept with rules of their own (domain/holds.py holds the value objects)."""

from __future__ import annotations

from datetime import timedelta

from domain import events, results
from domain.account_rules import AccountRules, Context
from domain.errors import ErrorCode, LedgerError
from domain.periods import utc_day


class HoldCommands(AccountRules):
    def reserve(
        self,
        ctx: Context,
        *,
        hold_id: str,
        action: str | None,
        credit_type: str | None,
        amount: int | None,
        quantity: int | None,
        ttl_seconds: int,
        resource: str | None,
    ) -> results.Reserved:
        """Holds what the use may cost; without a quantity, the action's `max_quantity` (the
        most a streaming call may use: its output tokens, say), else 1."""
        with self._command(ctx):
            if self.holds.used(hold_id):
                raise LedgerError(ErrorCode.invalid_command, f"hold_id {hold_id!r} already used")
            if ttl_seconds > ctx.catalog.max_hold_ttl_seconds:
                raise LedgerError(
                    ErrorCode.invalid_command,
                    f"ttl_seconds is above {ctx.catalog.max_hold_ttl_seconds}",
                )
            if self.holds.open_count() >= ctx.catalog.max_open_holds:
                raise LedgerError(
                    ErrorCode.hold_limit_reached,
                    f"{ctx.catalog.max_open_holds} holds are open: capture or release one first",
                )
            if quantity is None:
                spec = ctx.catalog.actions.get(action or "")
                quantity = spec.max_quantity if spec and spec.max_quantity else 1
            price = self._priced_use(
                ctx,
                action=action,
                credit_type=credit_type,
                amount=amount,
                quantity=quantity,
                resource=resource,
            )
            # Holds never overdraw: what is held must exist.
            breakdown, _ = self._take(ctx, price.credit_type, price.amount, overdraft=False)
            expires_at = ctx.now + timedelta(seconds=ttl_seconds)
            self._trigger(
                ctx,
                events.Reserved,
                hold_id=hold_id,
                action=action,
                credit_type=price.credit_type,
                quantity=quantity,
                amount=price.amount,
                resource=resource,
                breakdown=breakdown,
                expires_at=expires_at,
                day=utc_day(ctx.now),
                catalog_version=ctx.catalog.version,
            )
            self._after_spend(ctx, price.credit_type)
        return results.Reserved(hold_id, price.credit_type, price.amount, expires_at, breakdown)

    def capture(
        self, ctx: Context, *, hold_id: str, amount: int | None, final: bool = True
    ) -> results.Captured:
        """Spends `amount` of the hold (all of it when None). `final` closes the hold and
        returns the rest to its lots; otherwise the hold stays open with the rest, to be
        captured again, released or left to expire."""
        with self._command(ctx):
            hold = self.holds.open_hold(hold_id)
            captured_amount = hold.amount if amount is None else amount
            if captured_amount > hold.amount:
                raise LedgerError(
                    ErrorCode.invalid_command, f"amount is above the {hold.amount} held"
                )
            captured, released = hold.split(captured_amount)
            if not final and captured_amount < hold.amount:
                if captured_amount == 0:
                    raise LedgerError(ErrorCode.invalid_command, "a part capture spends some")
                self._trigger(
                    ctx,
                    events.PartCaptured,
                    hold_id=hold_id,
                    credit_type=hold.credit_type,
                    amount=captured_amount,
                    breakdown=captured,
                )
                self._after_spend(ctx, hold.credit_type)
                held_remaining = hold.amount - captured_amount
                return results.Captured(hold_id, captured_amount, 0, captured, held_remaining)
            self._trigger(
                ctx,
                events.Captured,
                hold_id=hold_id,
                credit_type=hold.credit_type,
                amount=captured_amount,
                breakdown=captured,
                released=released,
                forfeited=self.lots.forfeited(released),
            )
            self._after_spend(ctx, hold.credit_type)
        return results.Captured(hold_id, captured_amount, hold.amount - captured_amount, captured)

    def release(self, ctx: Context, *, hold_id: str) -> results.Released:
        with self._command(ctx):
            hold = self.holds.open_hold(hold_id)
            self._release(ctx, hold, events.Released)
        return results.Released(hold_id, hold.amount)

    def extend_hold(self, ctx: Context, *, hold_id: str, ttl_seconds: int) -> results.HoldExtended:
        """Moves the hold's expiry to `ttl_seconds` from now, if that is later (an expiry is
        never brought forward: release the hold instead)."""
        with self._command(ctx):
            hold = self.holds.open_hold(hold_id)
            if ttl_seconds > ctx.catalog.max_hold_ttl_seconds:
                raise LedgerError(
                    ErrorCode.invalid_command,
                    f"ttl_seconds is above {ctx.catalog.max_hold_ttl_seconds}",
                )
            expires_at = ctx.now + timedelta(seconds=ttl_seconds)
            if expires_at <= hold.expires_at:
                return results.HoldExtended(hold_id, hold.expires_at)
            self._trigger(ctx, events.HoldExtended, hold_id=hold_id, expires_at=expires_at)
        return results.HoldExtended(hold_id, expires_at)
