"""Ledger movements: what each event does to an account's available and held credits.

Pure, from the event alone: the deltas follow from the fields every event records (breakdowns,
forfeited parts, repaid overdraft and debt), so the transactions and analytics read models need
no lot state. `available` moves as in docs/DOMAIN.md: Σ (remaining - held) - overdraft - debt.

Each movement names its origin (`Origin`), from the event's own fields: what a history row shows
to explain itself. Allocation events stored before they recorded their plan give `plan` None.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.account import Account
from domain.lots import total


@dataclass(frozen=True)
class Origin:
    """Where a movement comes from. `source`: a grant's source (purchase, top_up, promotional,
    trial, admin, migration), allocation, renewal, usage, hold, revocation, expiry,
    plan_change. The rest is what the event names, None where it names nothing."""

    source: str
    pack: str | None = None
    payment_reference: str | None = None
    top_up_id: str | None = None
    hold_id: str | None = None
    # An allocation's plan and period; the new plan of a plan change.
    plan: str | None = None
    period_id: str | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    # A revocation's reason; a grant's `reference` (the granter's note: a ticket, a campaign);
    # why an allocation started (opened, plan_changed, period).
    reason: str | None = None


@dataclass(frozen=True)
class Movement:
    credit_type: str
    # purchase, top_up, grant, allocation, renew, usage, reserve, capture, release,
    # hold_expired, revoke, expire, plan_change
    kind: str
    # The event's own amount (consumed, held, captured, granted, revoked, expired, forfeited).
    amount: int
    available_delta: int
    held_delta: int
    # What the movement is about: action, lot id, hold id or plan.
    reference: str | None
    origin: Origin


def movements(event: Account.Event) -> list[Movement]:
    """The movements of one event, in credit-type order; [] for events that move nothing."""
    match event:
        case Account.Renewed():
            gained = event.amount - (event.forfeited if event.renewal != "add" else 0)
            origin = _allocation_origin(event, "renewal")
            return [
                _moved(event.credit_type, "renew", event.amount, gained, 0, event.lot_id, origin)
            ]
        case Account.AllocationGranted():
            kind = "allocation"
            origin = _allocation_origin(event, kind)
            amount = event.amount
            return [_moved(event.credit_type, kind, amount, amount, 0, event.lot_id, origin)]
        case Account.Granted():
            kind = event.source if event.source in ("purchase", "top_up") else "grant"
            origin = Origin(
                event.source,
                pack=event.pack,
                payment_reference=event.payment_reference,
                top_up_id=event.top_up_id,
                reason=event.reference,
            )
            amount = event.amount
            return [_moved(event.credit_type, kind, amount, amount, 0, event.lot_id, origin)]
        case Account.Consumed():
            amount = event.amount
            return [_moved(event.credit_type, "usage", amount, -amount, 0, event.action, USAGE)]
        case Account.Reserved():
            amount = event.amount
            origin = Origin("hold", hold_id=event.hold_id)
            return [
                _moved(event.credit_type, "reserve", amount, -amount, amount, event.hold_id, origin)
            ]
        case Account.Captured():
            released = total(event.released)
            returned = released - event.forfeited
            held = -(event.amount + released)
            origin = Origin("hold", hold_id=event.hold_id)
            amount = event.amount
            return [
                _moved(event.credit_type, "capture", amount, returned, held, event.hold_id, origin)
            ]
        case Account.PartCaptured():
            amount = event.amount
            origin = Origin("hold", hold_id=event.hold_id)
            return [_moved(event.credit_type, "capture", amount, 0, -amount, event.hold_id, origin)]
        case Account.HoldExtended():
            return []
        case Account.HoldExpired() | Account.Released():
            kind = "hold_expired" if isinstance(event, Account.HoldExpired) else "release"
            returned = event.amount - event.forfeited
            held = -event.amount
            origin = Origin("hold", hold_id=event.hold_id)
            amount = event.amount
            return [_moved(event.credit_type, kind, amount, returned, held, event.hold_id, origin)]
        case Account.Revoked():
            lost = event.unspent_revoked + event.debt_added + event.forfeited
            origin = Origin(
                "revocation", payment_reference=event.payment_reference, reason=event.reason
            )
            amount = event.amount
            return [_moved(event.credit_type, "revoke", amount, -lost, 0, event.lot_id, origin)]
        case Account.LotExpired():
            amount = event.amount
            return [_moved(event.credit_type, "expire", amount, -amount, 0, event.lot_id, EXPIRY)]
        case Account.PlanChanged():
            closed = sorted(event.closed_allocations, key=lambda c: str(c["credit_type"]))
            plan = event.to_plan
            origin = Origin("plan_change", plan=plan)
            return [
                _moved(
                    c["credit_type"],
                    "plan_change",
                    c["forfeited"],
                    -c["forfeited"],
                    0,
                    plan,
                    origin,
                )
                for c in closed
            ]
    return []


USAGE = Origin("usage")
EXPIRY = Origin("expiry")


def _allocation_origin(event: Account.AllocationGranted, source: str) -> Origin:
    return Origin(
        source,
        plan=event.plan,
        period_id=event.period_id,
        period_start=event.period_start,
        period_end=event.period_end,
        reason=event.reason,
    )


def _moved(
    credit_type: str,
    kind: str,
    amount: int,
    available: int,
    held: int,
    reference: str | None,
    origin: Origin,
) -> Movement:
    return Movement(credit_type, kind, int(amount), int(available), int(held), reference, origin)
