"""Ledger movements: what each event does to an account's available and held credits.

Pure, from the event alone: the deltas follow from the fields every event records (breakdowns,
forfeited parts, repaid overdraft and debt), so the transactions and analytics read models need
no lot state. `available` moves as in docs/DOMAIN.md: Σ (remaining - held) - overdraft - debt.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.account import Account
from domain.lots import total


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


def movements(event: Account.Event) -> list[Movement]:
    """The movements of one event, in credit-type order; [] for events that move nothing."""
    match event:
        case Account.Renewed():
            gained = event.amount - (event.forfeited if event.renewal != "add" else 0)
            return [_moved(event.credit_type, "renew", event.amount, gained, 0, event.lot_id)]
        case Account.AllocationGranted():
            kind = "allocation"
            return [_moved(event.credit_type, kind, event.amount, event.amount, 0, event.lot_id)]
        case Account.Granted():
            kind = event.source if event.source in ("purchase", "top_up") else "grant"
            return [_moved(event.credit_type, kind, event.amount, event.amount, 0, event.lot_id)]
        case Account.Consumed():
            reference = event.action
            return [_moved(event.credit_type, "usage", event.amount, -event.amount, 0, reference)]
        case Account.Reserved():
            amount = event.amount
            return [_moved(event.credit_type, "reserve", amount, -amount, amount, event.hold_id)]
        case Account.Captured():
            released = total(event.released)
            returned = released - event.forfeited
            held = -(event.amount + released)
            return [
                _moved(event.credit_type, "capture", event.amount, returned, held, event.hold_id)
            ]
        case Account.PartCaptured():
            amount = event.amount
            return [_moved(event.credit_type, "capture", amount, 0, -amount, event.hold_id)]
        case Account.HoldExtended():
            return []
        case Account.HoldExpired() | Account.Released():
            kind = "hold_expired" if isinstance(event, Account.HoldExpired) else "release"
            returned = event.amount - event.forfeited
            held = -event.amount
            return [_moved(event.credit_type, kind, event.amount, returned, held, event.hold_id)]
        case Account.Revoked():
            lost = event.unspent_revoked + event.debt_added + event.forfeited
            return [_moved(event.credit_type, "revoke", event.amount, -lost, 0, event.lot_id)]
        case Account.LotExpired():
            amount = event.amount
            return [_moved(event.credit_type, "expire", amount, -amount, 0, event.lot_id)]
        case Account.PlanChanged():
            closed = sorted(event.closed_allocations, key=lambda c: str(c["credit_type"]))
            plan = event.to_plan
            return [
                _moved(c["credit_type"], "plan_change", c["forfeited"], -c["forfeited"], 0, plan)
                for c in closed
            ]
    return []


def _moved(
    credit_type: str, kind: str, amount: int, available: int, held: int, reference: str | None
) -> Movement:
    return Movement(credit_type, kind, int(amount), int(available), int(held), reference)
