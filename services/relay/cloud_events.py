"""Ledger events as CloudEvents 1.0, structured JSON (DESIGN §2.4). Pure."""

from __future__ import annotations

import json
from typing import Any

from domain.account import Account
from domain.integration import cloud_event_type, event_data

SOURCE = "credits"
# Kafka protocol binding, structured mode: the whole event is the value, marked by this header.
CONTENT_TYPE = b"application/cloudevents+json; charset=utf-8"


def cloud_event(event: Account.Event, traceparent: str | None = None) -> dict[str, Any]:
    """The event as a CloudEvent; with the trace of the command that produced it, if any, as
    the distributed-tracing extension's `traceparent` attribute."""
    account_id = str(event.originator_id)
    attributes = {
        "specversion": "1.0",
        # Unique and stable across redeliveries: consumers dedupe by it.
        "id": f"{account_id}:{event.originator_version}",
        "source": SOURCE,
        "type": cloud_event_type(event),
        "subject": account_id,
        "time": event.timestamp.isoformat(),
        # The stream version: consecutive per account, so a consumer can see gaps and order.
        "sequence": event.originator_version,
        "datacontenttype": "application/json",
        "data": event_data(event),
    }
    if traceparent is not None:
        attributes["traceparent"] = traceparent
    return attributes


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
