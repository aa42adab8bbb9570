"""Holds: credits reserved on lots until captured, released or expired.

A hold's `parts` say how much it reserved on which lot, in burn order; capturing spends the
first part of them and releases the rest. Closed hold ids stay remembered for a while, so that
capturing an expired hold answers `hold_expired`, not `hold_not_found`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from domain.errors import ErrorCode, LedgerError
from domain.fields import Breakdown, Identifier, LotId, Name, total

# Closed hold ids remembered to tell `hold_expired` from `hold_not_found`; the oldest go first.
CLOSED_HOLDS_REMEMBERED = 1000

HoldOutcome = Literal["captured", "released", "expired"]


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: Identifier
    credit_type: Name
    amount: int
    # Per-lot parts of the hold, in burn order.
    parts: Breakdown
    expires_at: datetime
    action: Name | None

    def __deepcopy__(self, memo: dict[int, Any]) -> Hold:
        return self  # immutable: a copy of the account may share it

    def split(self, amount: int) -> tuple[Breakdown, Breakdown]:
        """The first `amount` of the parts (captured, in burn order) and the rest (released)."""
        captured: Breakdown = []
        released: Breakdown = []
        left = amount
        for part in self.parts:
            take = min(part["amount"], left)
            left -= take
            if take:
                captured.append({"lot_id": part["lot_id"], "amount": take})
            if part["amount"] - take:
                released.append({"lot_id": part["lot_id"], "amount": part["amount"] - take})
        return captured, released

    def check(self) -> None:
        assert total(self.parts) == self.amount >= 0, self

    def without(self, captured: Breakdown) -> Hold:
        """This hold after `captured` (its first parts, as `split` gives them) was spent."""
        taken = {part["lot_id"]: part["amount"] for part in captured}
        parts: Breakdown = []
        for part in self.parts:
            left = part["amount"] - taken.pop(part["lot_id"], 0)
            assert left >= 0, (self, captured)
            if left:
                parts.append({"lot_id": part["lot_id"], "amount": left})
        assert not taken, (self, captured)
        return replace(self, amount=self.amount - total(captured), parts=parts)


@dataclass(slots=True)
class Holds:
    """The open holds by id, and how the last closed ones ended."""

    by_id: dict[Identifier, Hold] = field(default_factory=dict)
    closed: dict[Identifier, HoldOutcome] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict[int, Any]) -> Holds:
        return Holds(dict(self.by_id), dict(self.closed))  # holds are immutable

    def values(self) -> Iterable[Hold]:
        return self.by_id.values()

    def used(self, hold_id: str) -> bool:
        """Hold ids are single-use: open, or closed and still remembered."""
        return hold_id in self.by_id or hold_id in self.closed

    def open_hold(self, hold_id: str) -> Hold:
        hold = self.by_id.get(hold_id)
        if hold is not None:
            return hold
        if self.closed.get(hold_id) == "expired":
            raise LedgerError(ErrorCode.hold_expired, f"hold {hold_id!r} expired")
        raise LedgerError(ErrorCode.hold_not_found, f"no open hold {hold_id!r}")

    def expiring(self, now: datetime) -> list[Hold]:
        due = [hold for hold in self.by_id.values() if hold.expires_at <= now]
        return sorted(due, key=lambda h: (h.expires_at, h.hold_id)) if due else due

    def next_expiry(self) -> datetime | None:
        return min((hold.expires_at for hold in self.by_id.values()), default=None)

    def add(self, hold: Hold) -> None:
        self.by_id[hold.hold_id] = hold

    def extend(self, hold_id: str, expires_at: datetime) -> None:
        hold = self.by_id[hold_id]
        # Commands only ever move it later (Account.extend_hold); equal is harmless.
        assert expires_at >= hold.expires_at, (hold, expires_at)
        self.by_id[hold_id] = replace(hold, expires_at=expires_at)

    def take_part(self, hold_id: str, captured: Breakdown) -> None:
        self.by_id[hold_id] = self.by_id[hold_id].without(captured)

    def open_count(self) -> int:
        return len(self.by_id)

    def close(self, hold_id: str, outcome: HoldOutcome, settled: Breakdown) -> Hold:
        hold = self.by_id.pop(hold_id)
        assert total(settled) == hold.amount, (hold, settled)
        self.closed[hold_id] = outcome
        while len(self.closed) > CLOSED_HOLDS_REMEMBERED:
            del self.closed[next(iter(self.closed))]
        return hold

    def held_per_lot(self) -> dict[LotId, int]:
        held: dict[LotId, int] = {}
        for hold in self.by_id.values():
            hold.check()
            for part in hold.parts:
                held[part["lot_id"]] = held.get(part["lot_id"], 0) + part["amount"]
        return held
