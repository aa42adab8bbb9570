"""Refunds and disputes → `revoke` commands, converging under duplicates and reordering.

Stripe's `charge.refunded` carries the charge, whose `amount_refunded` is cumulative, and the
same refund shows up again in every later `charge.refunded` of that charge. So the unit of work
is the **refund object**: one `revoke` per refund id (`stripe:<re_…>:revoke`), whose credits
depend only on that refund and the refunds created before it:

    credits(refund k) = floor(C * cum_k / P) - floor(C * cum_(k-1) / P)

with C the credits the payment bought, P the amount paid and cum_k the money refunded by
refunds 1..k in creation order. The terms telescope, so several partial refunds revoke exactly
floor(C * refunded / P), and the refund that completes the total revokes everything left (no
`amount`). Re-deriving a refund's command later (from another event, in another order) gives
the same payload, so the ledger's receipt makes it `duplicate`.

Reordering: a refund (or dispute) may be processed before the payment that it refunds was
granted (its webhook late or lost). Every revoke is therefore preceded by the purchase command
that the PaymentIntent stands for, with the same id and payload as the purchase path gives.
Both are keyed by the account, so they land on one partition and the ledger applies the
purchase first; when the purchase webhook comes later it is a `duplicate`. The result equals
the in-order one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.payments import metadata as md
from services.payments.mapping import Command, Outcome, purchase_command
from services.payments.stripe_objects import cents, currency, mapping, text

# Refunds that take the money back (pending ones included: Stripe counts them as refunded).
_LIVE = frozenset({"succeeded", "pending"})


def refunded(payment_intent: Mapping[str, Any], refunds: Sequence[Mapping[str, Any]]) -> Outcome:
    """`charge.refunded` → purchase (idempotent), then one `revoke` per refund object."""
    meta = md.payment_metadata(payment_intent.get("metadata"))
    if meta is None:
        return Outcome(note="not_ours")
    reference = text(payment_intent, "id")
    paid = cents(payment_intent, "amount")
    commands: list[Command] = [purchase_command(meta, reference, paid, currency(payment_intent))]
    live = sorted(
        (mapping(r, "refund") for r in refunds if mapping(r, "refund").get("status") in _LIVE),
        key=lambda r: (r.get("created") or 0, text(r, "id")),
    )
    cumulative = 0
    for refund in live:
        before = cumulative
        cumulative += cents(refund, "amount")
        complete = cumulative >= paid
        amount = (
            None
            if complete
            else _share(meta.credits, cumulative, paid) - _share(meta.credits, before, paid)
        )
        if amount != 0:
            commands.append(
                _revoke(meta.account_id, text(refund, "id"), reference, amount, "refund")
            )
        if complete:
            break
    return Outcome(commands=tuple(commands))


def disputed(payment_intent: Mapping[str, Any], dispute: Mapping[str, Any]) -> Outcome:
    """`charge.dispute.created` → purchase (idempotent), then a `revoke` (chargeback).

    A dispute of the whole payment revokes everything left of the lot; a partial one its share.
    """
    meta = md.payment_metadata(payment_intent.get("metadata"))
    if meta is None:
        return Outcome(note="not_ours")
    reference = text(payment_intent, "id")
    paid = cents(payment_intent, "amount")
    disputed_cents = cents(dispute, "amount")
    amount = None if disputed_cents >= paid else _share(meta.credits, disputed_cents, paid)
    commands: list[Command] = [purchase_command(meta, reference, paid, currency(payment_intent))]
    if amount != 0:
        commands.append(
            _revoke(meta.account_id, text(dispute, "id"), reference, amount, "chargeback")
        )
    return Outcome(commands=tuple(commands))


def _share(credits: int, money_cents: int, paid_cents: int) -> int:
    return credits * money_cents // paid_cents if paid_cents else 0


def _revoke(
    account_id: str, stripe_id: str, reference: str, amount: int | None, reason: str
) -> Command:
    command: Command = {
        "type": "revoke",
        "command_id": f"stripe:{stripe_id}:revoke",
        "account_id": account_id,
        "payment_reference": reference,
        "reason": reason,
    }
    if amount is not None:
        command["amount"] = amount
    return command
