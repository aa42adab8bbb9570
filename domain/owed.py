"""Credits an account owes per credit type, repaid first from the next credits added to it.

`overdraft`: spent beyond the lots, down to the credit type's overdraft floor. `debt`: refunded
or charged-back credits that were already spent, under the `debt` refund policy. New credits
(grants, purchases, allocations) repay the overdraft first, then the debt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.fields import Name


@dataclass(slots=True)
class Owed:
    overdraft: dict[Name, int] = field(default_factory=dict)
    debt: dict[Name, int] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict[int, Any]) -> Owed:
        return Owed(dict(self.overdraft), dict(self.debt))

    def of(self, credit_type: str) -> int:
        return self.overdraft.get(credit_type, 0) + self.debt.get(credit_type, 0)

    def repayment(self, credit_type: str, amount: int) -> tuple[int, int]:
        """What `amount` new credits repay: (overdraft, debt)."""
        overdraft = min(self.overdraft.get(credit_type, 0), amount)
        debt = min(self.debt.get(credit_type, 0), amount - overdraft)
        return overdraft, debt

    def add(self, credit_type: str, *, overdraft: int = 0, debt: int = 0) -> None:
        """Adds to what is owed; negative figures repay."""
        if overdraft:
            _add(self.overdraft, credit_type, overdraft)
        if debt:
            _add(self.debt, credit_type, debt)

    def check(self) -> None:
        assert not self.overdraft or min(self.overdraft.values()) > 0, self.overdraft
        assert not self.debt or min(self.debt.values()) > 0, self.debt


def _add(counters: dict[str, int], key: str, delta: int) -> None:
    # Absent, not zero, when nothing is owed: the snapshot and the equality of two accounts
    # then do not depend on whether something was owed once.
    value = counters.get(key, 0) + delta
    assert value >= 0, (key, value)
    if value:
        counters[key] = value
    else:
        counters.pop(key, None)
