"""docs/asyncapi.json is what the code generates, and real messages conform to it.

Real messages: commands as the client puts them on the wire, replies as the ledger service
makes them, CloudEvents as the relay builds them, from a scenario that produces every event
type. Each is checked twice: by the pydantic models the document is generated from, and
against the document's own JSON Schemas with `jsonschema` (tests/kit/asyncapi_schemas.py).
"""

from __future__ import annotations

import json
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from credits_client import CreditsClient
from pydantic import TypeAdapter, ValidationError

from contracts.asyncapi import render
from contracts.asyncapi.__main__ import main
from contracts.asyncapi.cloud_events import (
    ENVELOPE_FIELDS,
    cloud_event_adapter,
    event_classes,
    type_name,
)
from domain.account import Account
from domain.commands import Command, _Command
from domain.integration import _ENVELOPE
from domain.replies import Reply
from infra.settings import Topic
from services.relay.cloud_events import cloud_events, encode
from tests.client.conftest import InMemoryLedgerWire
from tests.kit.asyncapi_schemas import schema_errors, unknown_keywords
from tests.kit.clock import SettableClock
from tests.kit.ledger import Ledger

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
DOCUMENT = json.loads(DOCUMENT_PATH.read_text())
SCHEMAS = DOCUMENT["components"]["schemas"]
COMMAND: TypeAdapter[Any] = TypeAdapter(Command)
CLOUD_EVENT = cloud_event_adapter()


def test_docs_asyncapi_json_is_what_the_code_generates() -> None:
    assert DOCUMENT_PATH.read_text() == render(), (
        "docs/asyncapi.json is stale: run `python -m contracts.asyncapi`"
    )


def test_the_generator_check_fails_on_a_stale_file_and_writing_fixes_it(tmp_path: Path) -> None:
    stale = tmp_path / "asyncapi.json"
    stale.write_text("{}\n")
    assert main(["--check", "--output", str(stale)]) == 1
    assert main(["--output", str(stale)]) == 0
    assert main(["--check", "--output", str(stale)]) == 0


def test_every_schema_keyword_of_the_document_is_one_the_validator_checks() -> None:
    """A keyword unknown to Draft 07 would be skipped by `jsonschema`, silently."""
    assert unknown_keywords(DOCUMENT) == set()
    assert unknown_keywords({"components": {"schemas": {"X": {"prefixItems": []}}}}) == {
        "prefixItems"
    }


def test_the_document_covers_every_topic_command_event_and_header() -> None:
    channels = DOCUMENT["channels"]
    assert {c["address"] for c in channels.values()} >= {t.value for t in Topic}
    assert SCHEMAS["Command"]["discriminator"] == "type"
    mapping = {
        SCHEMAS[ref["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"]
        for ref in SCHEMAS["Command"]["oneOf"]
    }
    command_types = {
        typing.get_args(cls.model_fields["type"].annotation)[0] for cls in _Command.__subclasses__()
    }
    assert mapping == command_types and len(command_types) == 17
    assert set(channels["events"]["messages"]) == {type_name(c) for c in event_classes()} | {
        "credits.payment_refunded"
    }
    assert len(event_classes()) == 21
    assert set(SCHEMAS["CommandHeaders"]["properties"]) == {"correlation_id", "reply_to"}
    assert set(SCHEMAS["DeadLetterHeaders"]["required"]) == {
        "error.code",
        "error.message",
        "source.topic",
        "source.partition",
        "source.offset",
    }
    assert DOCUMENT["operations"]["receiveCommand"]["reply"]["address"]["location"] == (
        "$message.header#/reply_to"
    )


def test_the_data_fields_leave_out_what_the_relay_puts_in_the_envelope() -> None:
    assert ENVELOPE_FIELDS == _ENVELOPE


@pytest.fixture(scope="module")
async def history() -> Any:
    """A scenario on the in-memory ledger that writes every event type once at least."""
    clock = SettableClock()
    wire = InMemoryLedgerWire(Ledger("demo.toml", clock))
    client = CreditsClient(client_id="asyncapi", timeout_seconds=1)
    client._transport.request = wire.request  # type: ignore[method-assign]
    a = "doc-1"

    async def send(type: str, command_id: str, **fields: Any) -> Reply:
        return await client.send(
            {"type": type, "command_id": command_id, "account_id": a, **fields}
        )

    await client.open_account(a, "starter")
    await client.set_resource_limit(a, "qr-1", 5)
    await client.consume(a, "generate", metadata={"request": "r-1", "n": 2, "none": None})
    await client.reserve(a, "h1", "lookup", quantity=3, ttl_seconds=60)
    await client.capture(a, "h1", amount=1, final=False)  # a streaming call billed in parts
    await client.extend_hold(a, "h1", ttl_seconds=120)
    await client.capture(a, "h1")
    await client.reserve(a, "h2", "lookup", ttl_seconds=60)
    await client.release(a, "h2")
    await client.reserve(a, "h3", "lookup", ttl_seconds=60)
    await client.grant(
        a, "credits", 5, source="promotional", expires_at=clock.now() + timedelta(seconds=30)
    )
    clock.advance(minutes=5)
    await send("expire", "tick-1")  # hold and lot expiry
    await client.purchase(
        a, credit_type="credits", payment_reference="pi_1", amount_paid=500, currency="usd"
    )
    await client.revoke(a, payment_reference="pi_1", reason="refund")
    await send(
        "configure_top_up",
        "cfg",
        credit_type="credits",
        mode="auto",
        threshold=10,
        amount=100,
        max_per_month=3,
    )
    paid = await send("request_top_up", "tu1", credit_type="credits", amount=100)
    await client.purchase(
        a,
        credit_type="credits",
        top_up_id=paid.result["top_up_id"],
        amount=100,
        payment_reference="pi_2",
        amount_paid=500,
        currency="usd",
    )
    failed = await send("request_top_up", "tu2", credit_type="credits", amount=100)
    await send("fail_top_up", "tf", top_up_id=failed.result["top_up_id"], reason="card_declined")
    available = client.balance(a)["credits"].available  # type: ignore[index]
    await client.consume(a, credit_type="credits", amount=available - 15)  # low balance
    await send("change_plan", "cp1", plan="pro", effective="next_period")
    clock.advance(days=40)
    await send("expire", "tick-2")  # the plan change
    clock.advance(days=35)
    await send("expire", "tick-3")  # a renewal
    await client.consume(a, credit_type="credits", amount=10**12)  # a rejection
    # What the relay publishes: each event, and each allocation's `credits.granted` view.
    events = [
        record
        for e in wire.ledger.events(a)
        for record in cloud_events(typing.cast(Account.Event, e))
    ]
    assert any(r["id"].endswith(":granted") for r in events)
    yield wire, events
    wire.ledger.close()


def test_the_scenario_writes_every_event_type(history: Any) -> None:
    _, events = history
    assert {e["type"] for e in events} == {type_name(c) for c in event_classes()}


def test_real_commands_conform(history: Any) -> None:
    wire, _ = history
    assert len(wire.sent) > 20
    for _, value in wire.sent:
        COMMAND.validate_json(value)
        assert schema_errors(json.loads(value), DOCUMENT, "Command") == [], value


def test_real_replies_conform(history: Any) -> None:
    wire, _ = history
    statuses = set()
    for value in wire.replies:
        statuses.add(Reply.model_validate_json(value).status)
        assert schema_errors(json.loads(value), DOCUMENT, "Reply") == [], value
    assert statuses == {"accepted", "rejected"}


def test_real_cloud_events_conform(history: Any) -> None:
    _, events = history
    for event in events:
        CLOUD_EVENT.validate_json(encode(event))
        schema = f"{_class_of(event['type'])}CloudEvent"
        assert schema_errors(event, DOCUMENT, "CloudEvent") == [], event
        assert schema_errors(event, DOCUMENT, schema) == [], event


def _class_of(cloud_type: str) -> str:
    return next(c.__name__ for c in event_classes() if type_name(c) == cloud_type)


def _changed(value: dict[str, Any], path: list[str], new: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(value))
    target = copy
    for key in path[:-1]:
        target = target[key]
    if new is _DROP:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return copy


_DROP = object()


def test_invalid_commands_replies_and_events_are_refused(history: Any) -> None:
    wire, events = history
    command = json.loads(wire.sent[1][1])  # a consume
    consumed = next(e for e in events if e["type"] == "credits.consumed")
    reply = json.loads(wire.replies[0])
    bad_commands = [
        _changed(command, ["quantity"], 1.5),  # floats are never amounts
        _changed(command, ["type"], "teleport"),
        _changed(command, ["surprise"], 1),
        _changed(command, ["account_id"], "has space"),
        _changed(command, ["command_id"], _DROP),
    ]
    bad_events = [
        _changed(consumed, ["data", "breakdown", 0, "amount"], "5"),  # type: ignore[list-item]
        _changed(consumed, ["data", "surprise"], 1),
        _changed(consumed, ["data", "credit_type"], _DROP),
        _changed(consumed, ["type"], "credits.teleported"),
        _changed(consumed, ["specversion"], "0.3"),
    ]
    bad_replies = [
        _changed(reply, ["status"], "maybe"),
        _changed(reply, ["error"], {"code": "x", "message": "m"}),
    ]

    for bad in bad_commands:
        with pytest.raises(ValidationError):
            COMMAND.validate_json(json.dumps(bad))
        assert schema_errors(bad, DOCUMENT, "Command"), bad
    for bad in bad_events:
        with pytest.raises(ValidationError):
            CLOUD_EVENT.validate_json(json.dumps(bad))
        assert schema_errors(bad, DOCUMENT, "CloudEvent"), bad
    for bad in bad_replies:
        with pytest.raises(ValidationError):
            Reply.model_validate_json(json.dumps(bad))
        assert schema_errors(bad, DOCUMENT, "Reply"), bad
