"""Ledger events as CloudEvents 1.0, structured JSON (DESIGN §2.4). Pure."""

from __future__ import annotations

import json
from typing import Any, Literal

from domain.account import Account
from domain.integration import (
    GRANT_VIEW_ID_SUFFIX,
    GRANTED_TYPE,
    cloud_event_type,
    event_data,
    grant_view,
)

SOURCE = "credits"
# Kafka protocol binding, structured mode: the whole event is the value, marked by this header.
CONTENT_TYPE = b"application/cloudevents+json; charset=utf-8"
# The CloudEvents Sequence extension's `sequence` is a string compared as text: the stream
# version in this many zero-padded digits, enough for any 64-bit version, so text order is
# numeric order.
SEQUENCE_DIGITS = 20
MAX_SEQUENCE = 10**SEQUENCE_DIGITS - 1
# "integer": contract 1.0's JSON number, for one release (CREDITS_CLOUDEVENTS_SEQUENCE).
SequenceFormat = Literal["string", "integer"]


def sequence_text(version: int) -> str:
    assert 0 <= version <= MAX_SEQUENCE, version
    return f"{version:0{SEQUENCE_DIGITS}d}"


def cloud_event(
    event: Account.Event, traceparent: str | None = None, sequence: SequenceFormat = "string"
) -> dict[str, Any]:
    """The event as a CloudEvent; with the trace of the command that produced it, if any, as
    the distributed-tracing extension's `traceparent` attribute."""
    account_id = str(event.originator_id)
    version = int(event.originator_version)
    attributes = {
        "specversion": "1.0",
        # Unique and stable across redeliveries: consumers dedupe by it.
        "id": f"{account_id}:{version}",
        "source": SOURCE,
        "type": cloud_event_type(event),
        "subject": account_id,
        "time": event.timestamp.isoformat(),
        # The stream version: consecutive per account, so a consumer can see gaps and order.
        "sequence": sequence_text(version) if sequence == "string" else version,
        "datacontenttype": "application/json",
        "data": event_data(event),
    }
    if traceparent is not None:
        attributes["traceparent"] = traceparent
    return attributes


def cloud_events(
    event: Account.Event, traceparent: str | None = None, sequence: SequenceFormat = "string"
) -> list[dict[str, Any]]:
    """What the relay publishes for one event, in this order: the event itself, then, for an
    allocation starting or renewing, its `credits.granted` view (domain/integration.py). The
    view shares the fact's subject, time and `sequence` (it is the same fact) and has an id of
    its own, `<account>:<version>:granted`."""
    fact = cloud_event(event, traceparent, sequence)
    view = grant_view(event)
    if view is None:
        return [fact]
    granted = {**fact, "id": fact["id"] + GRANT_VIEW_ID_SUFFIX, "type": GRANTED_TYPE, "data": view}
    return [fact, granted]


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
