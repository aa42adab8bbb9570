"""Lots and the burn order.

A lot is one grant of credits. `remaining` counts what is left of it, including the part
reserved by holds (`held`); what a spend may draw is `remaining - held`. A closed lot (expired,
reset at renewal, revoked) keeps only its held part, which is forfeited if the hold is released.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.fields import Breakdown, LotId, Name, Part, total
from domain.holds import Hold

# Breakdown, Part and total are read from here by the projections, Hold by the v1 snapshot
# transcodings in infra/event_mapper.py; they live in domain/fields.py and holds.py.
__all__ = ["Breakdown", "Hold", "Lot", "Lots", "Part", "draw", "total"]

_NEVER = datetime.max.replace(tzinfo=None)


@dataclass(slots=True)
class Lot:
    lot_id: LotId
    seq: int
    credit_type: Name
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

    def __deepcopy__(self, memo: dict[int, Any]) -> Lot:
        return copy.copy(self)  # every field is immutable: a shallow copy is a deep one

    @property
    def revocable(self) -> int:
        return self.amount - self.revoked

    def burn_key(self) -> tuple[int, datetime, datetime, int]:
        """Lower priority first, then earliest expiry (never-expiring last), then oldest."""
        expiry = self.expires_at.replace(tzinfo=None) if self.expires_at else _NEVER
        return (self.priority, expiry, self.effective_at.replace(tzinfo=None), self.seq)

    def expired(self, now: datetime) -> bool:
        return not self.closed and self.expires_at is not None and self.expires_at <= now

    def spend(self, amount: int) -> None:
        self.remaining -= amount

    def hold(self, amount: int) -> None:
        self.held += amount

    def capture(self, amount: int) -> None:
        """A held part spent."""
        self.held -= amount
        self.remaining -= amount

    def release(self, amount: int) -> None:
        """A held part returned: spendable again, or forfeited if the lot closed meanwhile."""
        self.held -= amount
        if self.closed:
            self.remaining -= amount

    def close(self, forfeited: int) -> None:
        """Expired, reset or fully revoked: the unheld rest is forfeited, the held part stays."""
        assert forfeited == self.unheld, (self, forfeited)
        self.remaining -= forfeited
        self.closed = True

    def revoke(self, amount: int, unspent: int) -> None:
        """`amount` taken back, `unspent` of it from what is left; closes once all is revoked."""
        self.remaining -= unspent
        self.revoked += amount

    def check(self, held_by_holds: int) -> None:
        assert 0 <= self.held <= self.remaining <= self.amount, self
        assert 0 <= self.revoked <= self.amount, self
        assert not self.closed or self.remaining == self.held, self
        assert self.held == held_by_holds, (self, held_by_holds)


@dataclass(slots=True)
class Lots:
    """The account's lots by id, and the counter that numbers them (`lot-N`)."""

    by_id: dict[LotId, Lot] = field(default_factory=dict)
    seq: int = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> Lots:
        return Lots({lot_id: copy.copy(lot) for lot_id, lot in self.by_id.items()}, self.seq)

    def next_id(self) -> LotId:
        return f"lot-{self.seq + 1}"

    def add(
        self,
        *,
        lot_id: LotId,
        credit_type: str,
        source: str,
        amount: int,
        remaining: int,
        priority: int,
        effective_at: datetime,
        expires_at: datetime | None,
        paid: bool,
        payment_reference: str | None,
    ) -> None:
        self.seq += 1
        assert lot_id == f"lot-{self.seq}" and lot_id not in self.by_id
        self.by_id[lot_id] = Lot(
            lot_id=lot_id,
            seq=self.seq,
            credit_type=credit_type,
            source=source,
            amount=amount,
            remaining=remaining,
            held=0,
            priority=priority,
            effective_at=effective_at,
            expires_at=expires_at,
            paid=paid,
            payment_reference=payment_reference,
        )

    def __getitem__(self, lot_id: LotId) -> Lot:
        return self.by_id[lot_id]

    def get(self, lot_id: LotId) -> Lot | None:
        return self.by_id.get(lot_id)

    def values(self) -> Iterable[Lot]:
        return self.by_id.values()

    def of(self, credit_type: str) -> Iterator[Lot]:
        return (lot for lot in self.by_id.values() if lot.credit_type == credit_type)

    def unheld(self, credit_type: str) -> int:
        return sum(
            lot.remaining - lot.held
            for lot in self.by_id.values()
            if lot.credit_type == credit_type
        )

    def unheld_per_credit_type(self, credit_types: Iterable[str]) -> dict[str, int]:
        unheld = dict.fromkeys(credit_types, 0)
        for lot in self.by_id.values():
            if lot.credit_type in unheld:
                unheld[lot.credit_type] += lot.remaining - lot.held
        return unheld

    def held(self, credit_type: str) -> int:
        return sum(lot.held for lot in self.of(credit_type))

    def total(self, credit_type: str) -> int:
        """Σ remaining: with holds and what is owed, it reconciles with `available`."""
        return sum(lot.remaining for lot in self.of(credit_type))

    def spendable(self, credit_type: str, *, paid_too: bool) -> list[Lot]:
        """The lots a spend may draw from: unheld credits left, purchased ones if allowed."""
        return [
            lot for lot in self.of(credit_type) if lot.unheld > 0 and (paid_too or not lot.paid)
        ]

    def expiring(self, now: datetime) -> list[Lot]:
        due = [lot for lot in self.by_id.values() if lot.expired(now)]
        return sorted(due, key=_seq) if due else due

    def next_expiry(self) -> datetime | None:
        due = [lot.expires_at for lot in self.by_id.values() if not lot.closed]
        return min((at for at in due if at is not None), default=None)

    def spend(self, parts: Breakdown) -> None:
        for part in parts:
            self.by_id[part["lot_id"]].spend(part["amount"])

    def hold(self, parts: Breakdown) -> None:
        for part in parts:
            self.by_id[part["lot_id"]].hold(part["amount"])

    def capture(self, parts: Breakdown) -> None:
        for part in parts:
            self.by_id[part["lot_id"]].capture(part["amount"])

    def release(self, parts: Breakdown) -> None:
        for part in parts:
            self.by_id[part["lot_id"]].release(part["amount"])

    def forfeited(self, released: Breakdown) -> int:
        """What a release gives back to lots that closed meanwhile: it is lost, not returned."""
        return sum(part["amount"] for part in released if self.by_id[part["lot_id"]].closed)

    def forget_if_spent(self, lot_id: LotId, *, unless: Callable[[LotId], bool]) -> None:
        """Forgets a spent allocation lot (one a day would pile up) `unless` it is still
        needed (the current one); other lots stay, revocable."""
        lot = self.by_id.get(lot_id)
        spent = lot is not None and lot.source == "allocation" and lot.remaining == 0
        if spent and not unless(lot_id):
            del self.by_id[lot_id]

    def check(self, held_per_lot: dict[LotId, int]) -> None:
        """Every lot sound and holding exactly what the open holds reserve on it; no hold on a
        lot that is gone."""
        assert held_per_lot.keys() <= self.by_id.keys(), held_per_lot
        for lot_id, lot in self.by_id.items():
            lot.check(held_per_lot.get(lot_id, 0))


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


def _seq(lot: Lot) -> int:
    return lot.seq
