"""What the outbox relay publishes for each event: a CloudEvents `type` and JSON-safe `data`.

`type` is `credits.<event in snake case>` (`Account.LowBalance` → `credits.low_balance`);
`data` is the event's own fields (ints, strings, booleans, ISO-8601 times, per-lot breakdowns
of spends), without the envelope the relay puts around it (id, subject, time, sequence).

Every grant also reads as a `credits.granted` (what a seed-001 `onCreditsGranted` listens to):
`Granted` is one already; an allocation starting or renewing (`AllocationGranted`, `Renewed`)
is published a second time as a `credits.granted` whose `data` has exactly `Granted`'s fields,
`source` `allocation` or `renewal` (`grant_view`). The fact stays as it is, first.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any

from domain.account import Account

_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})
_NAMES: dict[type, str] = {Account.Opened: "account_opened"}


def cloud_event_type(event: Account.Event) -> str:
    cls = type(event)
    name = _NAMES.get(cls) or re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
    return f"credits.{name}"


GRANTED_TYPE = "credits.granted"
# The `source` of the `credits.granted` view of an allocation event.
ALLOCATION_SOURCES: dict[type, str] = {
    Account.Renewed: "renewal",
    Account.AllocationGranted: "allocation",
}
# The suffix of the view's CloudEvent id (`<account>:<version>:granted`): stable, unlike any
# event's own id (those end in the version), so readers dedupe it as any other.
GRANT_VIEW_ID_SUFFIX = ":granted"


def grant_view(event: Account.Event) -> dict[str, Any] | None:
    """The `data` of the `credits.granted` an allocation event also reads as; None for every
    other event (a `Granted` is one itself). Unpaid, no pack or payment: the allocation's plan
    and period are in the fact it follows."""
    source = ALLOCATION_SOURCES.get(type(event))
    if source is None:
        return None
    assert isinstance(event, Account.AllocationGranted)
    fields = {
        "command_id": event.command_id,
        "lot_id": event.lot_id,
        "credit_type": event.credit_type,
        "amount": event.amount,
        "source": source,
        "priority": event.priority,
        "expires_at": _json_safe(event.expires_at),
        "paid": False,
        "payment_reference": None,
        "amount_paid_cents": None,
        "currency": None,
        "pack": None,
        "reference": None,
        "top_up_id": None,
        "migration_tier": None,
        "repaid_overdraft": event.repaid_overdraft,
        "repaid_debt": event.repaid_debt,
        "catalog_version": event.catalog_version,
    }
    assert fields.keys() == _GRANTED_FIELDS, "the view has exactly Granted's fields"
    return fields


def _data_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - _ENVELOPE


def event_data(event: Account.Event) -> dict[str, Any]:
    return {key: _json_safe(value) for key, value in vars(event).items() if key not in _ENVELOPE}


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    assert value is None or isinstance(value, str | int | bool), type(value)
    return value


_GRANTED_FIELDS = _data_fields(Account.Granted)
