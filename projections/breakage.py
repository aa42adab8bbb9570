"""Breakage: credits that left their lots unspent, per credit type, from the event alone.

- `expired`: a lot's unheld rest at its expiry (`LotExpired`).
- `forfeited`: every other unspent loss: an allocation's unused rest at a `reset` renewal (a
  `rollover` loses only what passes its cap: the carried part is not breakage), the allocation
  lots a plan change closes, what a revocation leaves of a lot it closes, and held credits
  released back to a lot that closed meanwhile.
Revocations themselves (refunds, chargebacks) are not breakage: those credits were paid back.
"""

from __future__ import annotations

from domain.account import Account

EXPIRED = "expired"
FORFEITED = "forfeited"


def breakage(event: Account.Event) -> list[tuple[str, str, int]]:
    """(credit type, `expired` or `forfeited`, credits) of one event; none of zero credits."""
    found: list[tuple[str, str, int]] = []
    match event:
        case Account.LotExpired():
            found = [(event.credit_type, EXPIRED, event.amount)]
        case Account.Renewed():
            lost = max(0, event.forfeited - event.carried_over) if event.renewal != "add" else 0
            found = [(event.credit_type, FORFEITED, lost)]
        case Account.PlanChanged():
            found = [
                (str(c["credit_type"]), FORFEITED, int(c["forfeited"]))
                for c in sorted(event.closed_allocations, key=lambda c: str(c["credit_type"]))
            ]
        case Account.Revoked() | Account.Captured() | Account.Released():
            # HoldExpired is a Released.
            found = [(event.credit_type, FORFEITED, event.forfeited)]
    return [(ct, kind, int(credits)) for ct, kind, credits in found if credits]
