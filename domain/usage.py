"""Daily usage and its caps: quantities per action and per resource in the current UTC day.

Consumes and reserves count; releasing a hold does not give the count back. Only the current
day is kept: the first count of a new day starts over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.errors import ErrorCode, LedgerError
from domain.fields import Identifier, Name


@dataclass(slots=True)
class DailyUsage:
    day: str = ""  # the UTC date, `YYYY-MM-DD`
    by_action: dict[Name, int] = field(default_factory=dict)
    by_resource: dict[Identifier, int] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict[int, Any]) -> DailyUsage:
        return DailyUsage(self.day, dict(self.by_action), dict(self.by_resource))

    def count(self, day: str, action: str | None, resource: str | None, quantity: int) -> None:
        if day != self.day:
            self.day = day
            self.by_action = {}
            self.by_resource = {}
        if action is not None:
            self.by_action[action] = self.by_action.get(action, 0) + quantity
        if resource is not None:
            self.by_resource[resource] = self.by_resource.get(resource, 0) + quantity

    def check_limits(
        self,
        day: str,
        *,
        action: str | None,
        action_limit: int | None,
        resource: str | None,
        resource_limit: int | None,
        quantity: int,
        account_limit: bool = False,
    ) -> None:
        """Refuses `quantity` more if it would pass the action's or the resource's daily cap
        (`account_limit`: the resource's limit is the account's own, not the plan's)."""
        today = day == self.day
        if action is not None:
            used = self.by_action.get(action, 0) if today else 0
            if action_limit is not None and used + quantity > action_limit:
                raise LedgerError(
                    ErrorCode.daily_limit_reached,
                    f"{action}: {used} of {action_limit} used today (UTC)",
                )
        if resource is not None and resource_limit is not None:
            used = self.by_resource.get(resource, 0) if today else 0
            if used + quantity > resource_limit:
                whose = ", the account's own limit for it" if account_limit else ""
                raise LedgerError(
                    ErrorCode.resource_limit_reached,
                    f"{resource}: {used} of {resource_limit} used today (UTC){whose}",
                )

    def used_today(self, day: str, resource: str) -> int:
        return self.by_resource.get(resource, 0) if day == self.day else 0


def effective_limit(own: int | None, plan_limit: int | None) -> int | None:
    """The resource limit that applies: the lower of the account's own and the plan's cap (a
    plan change to a lower cap lowers it; back up, the account's own applies again)."""
    if own is None or plan_limit is None:
        return plan_limit if own is None else own
    return min(own, plan_limit)
