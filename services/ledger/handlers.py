"""Which account method decides each command: a typed table from command class to handler.

Every handler takes the account (open), the command's context and the command itself, and
calls the one `Account` method that decides it, each field passed by name: a type checker, an
IDE and a reader follow a command to its method from here. `open_account` has no account yet
and is decided in services/ledger/service.py. A command class without a handler fails at import
(see the check at the bottom), not on the first such command in production.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, get_args

from domain import results
from domain.account import Account, Context
from domain.commands import (
    Capture,
    ChangePlan,
    Command,
    ConfigureTopUp,
    Consume,
    Expire,
    ExtendHold,
    FailTopUp,
    Grant,
    Migrate,
    OpenAccount,
    Purchase,
    Release,
    Renew,
    RequestTopUp,
    Reserve,
    Revoke,
    SetResourceLimit,
)

C = TypeVar("C")
Handler = Callable[[Account, Context, C], results.CommandResult]


def consume(account: Account, ctx: Context, c: Consume) -> results.CommandResult:
    return account.consume(
        ctx,
        action=c.action,
        credit_type=c.credit_type,
        amount=c.amount,
        quantity=c.quantity,
        resource=c.resource,
        metadata=c.metadata,
    )


def reserve(account: Account, ctx: Context, c: Reserve) -> results.CommandResult:
    return account.reserve(
        ctx,
        hold_id=c.hold_id,
        action=c.action,
        credit_type=c.credit_type,
        amount=c.amount,
        quantity=c.quantity,
        ttl_seconds=c.ttl_seconds,
        resource=c.resource,
    )


def capture(account: Account, ctx: Context, c: Capture) -> results.CommandResult:
    return account.capture(ctx, hold_id=c.hold_id, amount=c.amount, final=c.final)


def extend_hold(account: Account, ctx: Context, c: ExtendHold) -> results.CommandResult:
    return account.extend_hold(ctx, hold_id=c.hold_id, ttl_seconds=c.ttl_seconds)


def release(account: Account, ctx: Context, c: Release) -> results.CommandResult:
    return account.release(ctx, hold_id=c.hold_id)


def grant(account: Account, ctx: Context, c: Grant) -> results.CommandResult:
    return account.grant(
        ctx,
        credit_type=c.credit_type,
        amount=c.amount,
        source=c.source,
        expires_at=c.expires_at,
        priority=c.priority,
        reference=c.reference,
    )


def migrate(account: Account, ctx: Context, c: Migrate) -> results.CommandResult:
    return account.migrate(ctx, tier=c.tier)


def purchase(account: Account, ctx: Context, c: Purchase) -> results.CommandResult:
    return account.purchase(
        ctx,
        pack=c.pack,
        credit_type=c.credit_type,
        amount=c.amount,
        payment_reference=c.payment_reference,
        amount_paid=c.amount_paid,
        currency=c.currency,
        top_up_id=c.top_up_id,
    )


def revoke(account: Account, ctx: Context, c: Revoke) -> results.CommandResult:
    return account.revoke(
        ctx,
        payment_reference=c.payment_reference,
        grant_id=c.grant_id,
        amount=c.amount,
        reason=c.reason,
    )


def renew(account: Account, ctx: Context, c: Renew) -> results.CommandResult:
    return account.renew(ctx, period_id=c.period_id)


def expire(account: Account, ctx: Context, c: Expire) -> results.CommandResult:
    return account.expire(ctx)


def change_plan(account: Account, ctx: Context, c: ChangePlan) -> results.CommandResult:
    return account.change_plan(ctx, plan=c.plan, effective=c.effective)


def configure_top_up(account: Account, ctx: Context, c: ConfigureTopUp) -> results.CommandResult:
    return account.configure_top_up(
        ctx,
        credit_type=c.credit_type,
        mode=c.mode,
        threshold=c.threshold,
        amount=c.amount,
        max_per_month=c.max_per_month,
    )


def set_resource_limit(
    account: Account, ctx: Context, c: SetResourceLimit
) -> results.CommandResult:
    return account.set_resource_limit(ctx, resource=c.resource, daily_limit=c.daily_limit)


def request_top_up(account: Account, ctx: Context, c: RequestTopUp) -> results.CommandResult:
    return account.request_top_up(ctx, credit_type=c.credit_type, amount=c.amount)


def fail_top_up(account: Account, ctx: Context, c: FailTopUp) -> results.CommandResult:
    return account.fail_top_up(
        ctx, top_up_id=c.top_up_id, reason=c.reason, recovery_url=c.recovery_url
    )


# Typed per entry by the functions above; the dict's value type is the common supertype.
HANDLERS: dict[type[Any], Handler[Any]] = {
    Consume: consume,
    Reserve: reserve,
    Capture: capture,
    ExtendHold: extend_hold,
    Release: release,
    Grant: grant,
    Migrate: migrate,
    Purchase: purchase,
    Revoke: revoke,
    Renew: renew,
    Expire: expire,
    ChangePlan: change_plan,
    ConfigureTopUp: configure_top_up,
    SetResourceLimit: set_resource_limit,
    RequestTopUp: request_top_up,
    FailTopUp: fail_top_up,
}

_ALL_COMMANDS = set(get_args(get_args(Command)[0]))
assert _ALL_COMMANDS - set(HANDLERS) == {OpenAccount}, _ALL_COMMANDS - set(HANDLERS)


def decide(account: Account, ctx: Context, command: Command) -> results.CommandResult:
    """The account's decision on `command` (raises `LedgerError` on a refusal)."""
    return HANDLERS[type(command)](account, ctx, command)
