"""`credits payments`: the Stripe payments the payment consumer sent to the ledger."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC

from infra.settings import Settings
from services.cli.parsing import Commands, group
from services.payments.purchases import Payment, PaymentState, PostgresPurchases


def _cmd_payments_unapplied(args: argparse.Namespace, settings: Settings) -> int:
    async def read() -> list[Payment]:
        purchases = await PostgresPurchases.open(settings)
        try:
            states = [PaymentState(s) for s in args.state] if args.state else None
            return await purchases.unapplied(states, args.limit)
        finally:
            await purchases.close()

    payments = asyncio.run(read())
    print(f"{'sent at (UTC)':<19}  {'state':<14}  {'payment':<28}  {'account':<24}  detail")
    for payment in payments:
        if payment.state == PaymentState.REFUNDED:
            detail = f"{payment.refusal_code}; refund {payment.refund_id} ({payment.refund_cents})"
        elif payment.state == PaymentState.REFUND_FAILED:
            detail = f"{payment.refusal_code}; refund failed: {payment.refund_error}"
        else:
            detail = payment.refusal_code or "-"
        print(
            f"{payment.sent_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}  {payment.state.value:<14}  "
            f"{payment.payment_reference:<28}  {payment.account_id:<24}  {detail}"
        )
    print(f"{len(payments)} payment(s)")
    return 0


def add_commands(commands: Commands) -> None:
    payment_commands = group(
        commands,
        "payments",
        "inspect the payments sent to the ledger",
        "Inspect the Stripe payments the payment consumer sent to the ledger (docs/PAYMENTS.md).",
    )
    unapplied = payment_commands.add_parser(
        "unapplied",
        help="payments that gave no credits: refused (refunded or not) or awaiting a reply",
        description="Lists the payments whose purchase the ledger has not granted, oldest "
        "first: awaiting_reply (sent, no answer yet), refund_pending, refunded (the ledger "
        "refused it and the money went back), refund_failed (refused, and Stripe did not "
        "refund it: act by hand). Each with its account, the ledger's refusal code and the "
        "refund.",
    )
    unapplied.add_argument(
        "--state",
        action="append",
        choices=[s.value for s in PaymentState if s != PaymentState.APPLIED],
        help="only this state (repeatable; default: every state but applied)",
    )
    unapplied.add_argument(
        "--limit", type=int, default=100, help="at most this many (default 100, at most 1000)"
    )
    unapplied.set_defaults(handler=_cmd_payments_unapplied)
