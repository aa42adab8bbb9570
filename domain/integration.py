"""What the outbox relay publishes for each event: a CloudEvents `type` and JSON-safe `data`.

`type` is `credits.<event in snake case>` (`Account.LowBalance` → `credits.low_balance`);
`data` is the event's own fields (ints, strings, booleans, ISO-8601 times, per-lot breakdowns
of spends), without the envelope the relay puts around it (id, subject, time, sequence).
"""

from __future__ import annotations

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
