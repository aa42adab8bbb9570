"""Lots, holds and the burn order.

A lot is one grant of credits. `remaining` counts what is left of it, including the part
reserved by holds (`held`); what a spend may draw is `remaining - held`. A closed lot (expired,
reset at renewal, revoked) keeps only its held part, which is forfeited if the hold is released.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# A spend's record of which lots it drew from: [{"lot_id": ..., "amount": ...}], in burn order.
Breakdown = list[dict[str, Any]]

_NEVER = datetime.max.replace(tzinfo=None)


@dataclass
class Lot:
    lot_id: str
    seq: int
    credit_type: str
    source: str
    amount: int
    remaining: int
    held: int
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    paid: bool
    payment_reference: str | None
    revoked: int = 0
    closed: bool = False

    @property
    def unheld(self) -> int:
        return self.remaining - self.held

    def burn_key(self) -> tuple[int, datetime, datetime, int]:
        """Lower priority first, then earliest expiry (never-expiring last), then oldest."""
        expiry = self.expires_at.replace(tzinfo=None) if self.expires_at else _NEVER
        return (self.priority, expiry, self.effective_at.replace(tzinfo=None), self.seq)

    def check(self) -> None:
        assert 0 <= self.held <= self.remaining <= self.amount, self
        assert 0 <= self.revoked <= self.amount, self
        assert not self.closed or self.remaining == self.held, self


@dataclass
class Hold:
    hold_id: str
    credit_type: str
    amount: int
    # Per-lot parts of the hold, in burn order.
    parts: Breakdown
    expires_at: datetime
    action: str | None


def draw(lots: Iterable[Lot], amount: int) -> tuple[Breakdown, int]:
    """Take `amount` from the lots in burn order: the per-lot breakdown and the shortfall."""
    assert amount >= 0
    breakdown: Breakdown = []
    left = amount
    for lot in sorted(lots, key=Lot.burn_key):
        if left == 0:
            break
        take = min(lot.unheld, left)
        if take > 0:
            breakdown.append({"lot_id": lot.lot_id, "amount": take})
            left -= take
    return breakdown, left


def total(breakdown: Breakdown) -> int:
    return sum(int(part["amount"]) for part in breakdown)
