"""The usage read model: per account, UTC day, action and credit type; and units per resource
and UTC day (`rm_usage_resources`, what resource limits count).

- `count`: units of the action used (Σ quantity), consumes and reserves alike (as the daily
  limits count them); free actions (cost 0) count too (seed 004: cached results, scraping).
- `cost`: credits the catalog priced those uses at (a consume's amount, a hold's amount).
- `credits`: credits actually spent (a consume's amount, a capture's amount on the capture day).
  So `cost - credits` is what holds reserved but did not spend.
- `tags`: the action's tags (from the event, or the catalog for holds), so breakdowns such as
  seed 000's AI vs non-AI are one `GROUP BY` away.
Spends by credit type and amount, without an action, are under action `''`. An event whose
recorded `day` is not a date counts on its timestamp's UTC day.
"""

from __future__ import annotations

from datetime import date, datetime

from domain.account import Account
from domain.catalog import Catalog
from projections.batch import BatchState
from projections.tables import EXACT_INT, TAGS, TEXT, TEXT_OR_NULL, Table, not_null

USAGE = Table(
    "rm_usage_daily",
    "counter",
    (
        ("account_id", TEXT),
        ("day", not_null("date")),
        ("action", TEXT),
        ("credit_type", TEXT),
        ("count", EXACT_INT),
        ("credits", EXACT_INT),
        ("cost", EXACT_INT),
        ("tags", TAGS),
    ),
    key=("account_id", "day", "action", "credit_type"),
    sums=("count", "credits", "cost"),
)
# Units used per resource (a QR code, say) and UTC day, consumes and reserves alike: what the
# resource limits count.
USAGE_RESOURCES = Table(
    "rm_usage_resources",
    "counter",
    (
        ("account_id", TEXT),
        ("day", not_null("date")),
        ("resource", TEXT),
        ("count", EXACT_INT),
    ),
    key=("account_id", "day", "resource"),
    sums=("count",),
)
# Open holds' action and tags: a capture credits the spend to the action that reserved it.
USAGE_HOLDS = Table(
    "rm_usage_holds",
    "account",
    (
        ("account_id", TEXT),
        ("hold_id", TEXT),
        ("action", TEXT_OR_NULL),
        ("credit_type", TEXT),
        ("tags", TAGS),
    ),
    key=("account_id", "hold_id"),
)


def usage_day(day: str, at: datetime) -> date:
    """The UTC day an event records; its timestamp's UTC day if what it records is no date."""
    try:
        return date.fromisoformat(day)
    except (TypeError, ValueError):
        return at.date()  # made UTC by projections/storable.py


class UsageProjection:
    name = "usage"
    tables: tuple[Table, ...] = (USAGE, USAGE_HOLDS, USAGE_RESOURCES)

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def finish(self, state: BatchState) -> None:
        pass

    def apply(self, state: BatchState, event: Account.Event, position: int) -> None:
        holds = state.rows(USAGE_HOLDS.name)
        account_id = event.originator_id
        if isinstance(event, Account.Consumed | Account.Reserved) and event.resource is not None:
            row = {
                "account_id": account_id,
                "day": usage_day(event.day, event.timestamp),
                "resource": event.resource,
                "count": event.quantity,
            }
            state.add(USAGE_RESOURCES.name, row)
        match event:
            case Account.Consumed():
                spent = event.amount
                day = usage_day(event.day, event.timestamp)
                key = (day, event.action, event.credit_type, event.tags)
                self._add(state, account_id, key, count=event.quantity, credits=spent, cost=spent)
            case Account.Reserved():
                tags = self._tags(event.action)
                key = (usage_day(event.day, event.timestamp), event.action, event.credit_type, tags)
                self._add(
                    state, account_id, key, count=event.quantity, credits=0, cost=event.amount
                )
                holds.put(
                    {
                        "account_id": account_id,
                        "hold_id": event.hold_id,
                        "action": event.action,
                        "credit_type": event.credit_type,
                        "tags": tags,
                    }
                )
            case Account.Captured():
                hold = holds.get(account_id, event.hold_id)
                assert hold is not None, (account_id, event.hold_id)
                holds.delete(account_id, event.hold_id)
                key = (event.timestamp.date(), hold["action"], hold["credit_type"], hold["tags"])
                self._add(state, account_id, key, count=0, credits=event.amount, cost=0)
            case Account.PartCaptured():
                hold = holds.get(account_id, event.hold_id)
                assert hold is not None, (account_id, event.hold_id)
                key = (event.timestamp.date(), hold["action"], hold["credit_type"], hold["tags"])
                self._add(state, account_id, key, count=0, credits=event.amount, cost=0)
            case Account.Released():  # and HoldExpired
                holds.delete(account_id, event.hold_id)

    def _tags(self, action: str | None) -> list[str]:
        spec = self.catalog.actions.get(action or "")
        return list(spec.tags) if spec is not None else []

    @staticmethod
    def _add(
        state: BatchState,
        account_id: str,
        key: tuple[date, str | None, str, list[str]],
        *,
        count: int,
        credits: int,
        cost: int,
    ) -> None:
        """Add to the (day, action, credit type) row; `key` ends with the action's tags."""
        day, action, credit_type, tags = key
        state.add(
            USAGE.name,
            {
                "account_id": account_id,
                "day": day,
                "action": action or "",
                "credit_type": credit_type,
                "count": count,
                "credits": credits,
                "cost": cost,
                "tags": list(tags),
            },
        )
