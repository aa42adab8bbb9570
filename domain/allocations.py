"""A plan's allocations over time: the running allocation of each credit type (its period and
its lot), how it renews when the period ends, and a plan change waiting for the billing month.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from domain.catalog import Allocation
from domain.fields import Credits, LotId, Name
from domain.periods import Period, PeriodKind

Renewal = Literal["reset", "add", "rollover"]


@dataclass(frozen=True, slots=True)
class AllocationState:
    """The allocation of one credit type in its current period (the name is stored in v1
    snapshots: see domain/snapshots.py)."""

    credit_type: Name
    period: PeriodKind
    period_index: int
    period_id: str
    period_start: datetime
    period_end: datetime
    renewal: str
    lot_id: LotId
    # Spent earlier in this period under the previous plan (a plan change does not refill).
    used_before: Credits

    def __deepcopy__(self, memo: dict[int, Any]) -> AllocationState:
        return self  # immutable: a copy of the account may share it

    def used(self, lot_amount: int, lot_remaining: int) -> int:
        """Spent in this period, under this plan and the ones before."""
        return self.used_before + lot_amount - lot_remaining


@dataclass(frozen=True, slots=True)
class RenewalTerms:
    """What a period boundary does to an allocation (the figures of `Renewed`)."""

    renewal: Renewal
    amount: int
    periods_elapsed: int
    forfeited: int
    carried_over: int


def renewal_terms(
    current: AllocationState, rule: Allocation | None, period: Period, unused: int
) -> RenewalTerms:
    """Renewing into `period` under the plan's `rule` (None: the plan no longer allocates this
    credit type), with `unused` left unheld in the current lot.

    `add` stacks (the old lot stays; each elapsed period adds one allocation), `reset` starts
    over (the unused rest is forfeited), `rollover` carries the unused rest up to the cap, and
    periods skipped without commands were unused in full, so they carry too.
    """
    elapsed = period.index - current.period_index
    assert elapsed >= 1
    allocation = rule.amount if rule else 0
    renewal: Renewal = rule.renewal if rule else "reset"
    if renewal == "add":
        return RenewalTerms(renewal, allocation * elapsed, elapsed, 0, 0)
    carried = 0
    if renewal == "rollover":
        assert rule is not None and rule.rollover_cap is not None
        carried = min(unused + (elapsed - 1) * allocation, rule.rollover_cap)
    return RenewalTerms(renewal, allocation + carried, elapsed, unused, carried)


def starting_amount(rule: Allocation, used: tuple[PeriodKind, int] | None) -> tuple[int, int]:
    """A plan's allocation starting mid-period: (amount, used_in_period). What was used this
    period under the previous plan counts against it when the period kind is the same."""
    used_in_period = used[1] if used is not None and used[0] == rule.period else 0
    return max(0, rule.amount - used_in_period), used_in_period


@dataclass(slots=True)
class Allocations:
    """The running allocation per credit type."""

    by_credit_type: dict[Name, AllocationState] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict[int, Any]) -> Allocations:
        return Allocations(dict(self.by_credit_type))  # allocation states are immutable

    def get(self, credit_type: str) -> AllocationState | None:
        return self.by_credit_type.get(credit_type)

    def __getitem__(self, credit_type: str) -> AllocationState:
        return self.by_credit_type[credit_type]

    def items(self) -> Iterable[tuple[Name, AllocationState]]:
        return self.by_credit_type.items()

    def is_current_lot(self, lot_id: LotId) -> bool:
        """Whether `lot_id` is a current allocation lot: kept even when spent, until its
        period ends."""
        return any(a.lot_id == lot_id for a in self.by_credit_type.values())

    def due(self, now: datetime) -> list[Name]:
        """Credit types whose period has ended, in a stable order."""
        return sorted(ct for ct, a in self.by_credit_type.items() if a.period_end <= now)

    def next_end(self) -> datetime | None:
        return min((a.period_end for a in self.by_credit_type.values()), default=None)

    def start(self, allocation: AllocationState) -> AllocationState | None:
        """The new period's allocation replaces the credit type's previous one, returned."""
        previous = self.by_credit_type.get(allocation.credit_type)
        self.by_credit_type[allocation.credit_type] = allocation
        return previous

    def end(self, credit_type: str) -> None:
        del self.by_credit_type[credit_type]


@dataclass(frozen=True, slots=True)
class ScheduledPlan:
    """A plan change recorded for later: plans change with the billing month."""

    plan: Name
    effective_at: datetime

    def __deepcopy__(self, memo: dict[int, Any]) -> ScheduledPlan:
        return self  # immutable: a copy of the account may share it
