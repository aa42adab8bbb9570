"""Refunds and disputes → `revoke` commands: pure, no I/O.

Refunds: Stripe's `charge.refunded` carries the charge's cumulative `amount_refunded`; events
come late, twice and out of order, and several refunds may be created in the same second (so
their order cannot be told from `created`). The credits to take back are therefore derived from
the cumulative amount only:

    target(R) = floor(C * R / P)          (C credits bought, P amount paid, R refunded so far)

and each `charge.refunded` revokes the difference between the target of the largest R seen and
what was already revoked (`revoke_step`). The payment consumer keeps (R, revoked) per payment
in PostgreSQL and decides each step in a transaction holding the payment's row (see
`purchases.PostgresPurchases.plan_refund`), so any order, timing or redelivery of the events
ends at target(max R): a smaller or repeated R revokes nothing, a larger one the difference.
A refund of the whole amount (R ≥ P) revokes all that is left of the lot (no `amount`).

Reordering: a refund (or dispute) may be processed before the payment was granted (its
webhook late or lost). Every revoke is therefore preceded by the purchase command that the
PaymentIntent stands for, with the same id and payload as the purchase path gives. Both are
keyed by the account, so they land on one partition and the ledger applies the purchase first;
when the purchase webhook comes later it is a `duplicate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.payments import metadata as md
from services.payments.mapping import Command, Outcome, purchase_command
from services.payments.metadata import PaymentMetadata
from services.payments.stripe_objects import cents, currency, text


@dataclass(frozen=True)
class Revoked:
    """How much of a payment's refunds its revokes cover so far."""

    refunded_cents: int = 0  # the largest cumulative refunded amount acted on
    credits: int = 0  # credits revoked for it (target of `refunded_cents`)


@dataclass(frozen=True)
class RevokeStep:
    after: Revoked
    # Credits to revoke now; None: all that is left of the lot (the whole amount is refunded).
    amount: int | None


@dataclass(frozen=True)
class Refunded:
    """What a `charge.refunded` event says about one payment of ours."""

    meta: PaymentMetadata
    purchase: Command
    paid_cents: int
    refunded_cents: int


def target_credits(credits: int, refunded_cents: int, paid_cents: int) -> int:
    """floor(C * R / P), all of C once R reaches P; never more than C."""
    assert credits >= 0 and refunded_cents >= 0 and paid_cents > 0
    if refunded_cents >= paid_cents:
        return credits
    return credits * refunded_cents // paid_cents


def revoke_step(
    before: Revoked, refunded_cents: int, credits: int, paid_cents: int
) -> RevokeStep | None:
    """The revoke that brings `before` to the target of `refunded_cents`, or None (nothing new:
    an older or repeated amount). A step with `amount == 0` only records the larger amount."""
    if paid_cents <= 0 or refunded_cents <= before.refunded_cents:
        return None
    target = target_credits(credits, refunded_cents, paid_cents)
    assert target >= before.credits, "targets grow with the refunded amount"
    after = Revoked(refunded_cents=refunded_cents, credits=target)
    if refunded_cents >= paid_cents:
        return RevokeStep(after, None if target > before.credits else 0)
    return RevokeStep(after, target - before.credits)


def refund_revoke(refunded: Refunded, step: RevokeStep) -> Command:
    """The `revoke` of one step; its id names the cumulative amount it brings the lot to."""
    reference = refunded.purchase["payment_reference"]
    command: Command = {
        "type": "revoke",
        "command_id": f"stripe:{reference}:refunded:{step.after.refunded_cents}",
        "account_id": refunded.meta.account_id,
        "payment_reference": reference,
        "reason": "refund",
    }
    if step.amount is not None:
        command["amount"] = step.amount
    return command


def refunded(payment_intent: Mapping[str, Any], charge: Mapping[str, Any]) -> Refunded | None:
    """`charge.refunded` of one of our payments (None: not ours)."""
    meta = md.payment_metadata(payment_intent.get("metadata"))
    if meta is None:
        return None
    reference = text(payment_intent, "id")
    paid = cents(payment_intent, "amount")
    purchase = purchase_command(meta, reference, paid, currency(payment_intent))
    return Refunded(meta, purchase, paid, min(cents(charge, "amount_refunded"), paid))


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
    amount = None if disputed_cents >= paid or paid == 0 else meta.credits * disputed_cents // paid
    commands: list[Command] = [purchase_command(meta, reference, paid, currency(payment_intent))]
    if amount != 0:
        command: Command = {
            "type": "revoke",
            "command_id": f"stripe:{text(dispute, 'id')}:revoke",
            "account_id": meta.account_id,
            "payment_reference": reference,
            "reason": "chargeback",
        }
        if amount is not None:
            command["amount"] = amount
        commands.append(command)
    return Outcome(commands=tuple(commands))
