"""What the relay publishes per event (services/relay/cloud_events.py), pure: every grant reads as a
`credits.granted` with its source, allocations and renewals included, the facts unchanged; and
`sequence` is the CloudEvents Sequence extension's string, text order equal to numeric order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.asyncapi.cloud_events import cloud_event_adapter
from domain.account import Account
from domain.integration import event_data
from services.relay.cloud_events import (
    MAX_SEQUENCE,
    SEQUENCE_DIGITS,
    cloud_event,
    cloud_events,
    encode,
    sequence_text,
)
from tests.kit.ledger import Ledger

CLOUD_EVENT = cloud_event_adapter()
# Any version a stream can reach: the event store keeps versions in a signed 64-bit column.
VERSIONS = st.integers(min_value=1, max_value=2**63 - 1)


@pytest.fixture
def ledger() -> Ledger:
    return Ledger("seed_001_stripe_credits.toml")


def published(ledger: Ledger, **options: Any) -> list[dict[str, Any]]:
    return [record for e in ledger.events() for record in cloud_events(e, **options)]


@given(VERSIONS, VERSIONS)
def test_sequences_sort_as_text_as_their_versions_sort_as_numbers(a: int, b: int) -> None:
    assert (sequence_text(a) < sequence_text(b)) == (a < b)
    assert (sequence_text(a) == sequence_text(b)) == (a == b)
    assert int(sequence_text(a)) == a


@given(VERSIONS)
def test_a_sequence_is_twenty_decimal_digits(version: int) -> None:
    text = sequence_text(version)
    assert len(text) == SEQUENCE_DIGITS == 20 and text.isascii() and text.isdigit()
    assert MAX_SEQUENCE >= 2**64 - 1, "room for any 64-bit version"


def test_a_renewal_is_published_as_its_fact_then_as_credits_granted(ledger: Ledger) -> None:
    ledger.ok("open_account", plan="pro")
    ledger.clock.set(datetime(2024, 2, 29, 10, tzinfo=UTC))
    ledger.ok("renew", period_id="2024-02-29")
    records = published(ledger)

    renewed = [r for r in records if r["type"] == "credits.renewed"]
    assert len(renewed) == 2, "api_calls and ai_tokens"
    for fact in renewed:
        view = records[records.index(fact) + 1]
        assert view["type"] == "credits.granted", "the view right after its fact"
        assert view["id"] == fact["id"] + ":granted"
        assert (view["subject"], view["time"], view["sequence"]) == (
            fact["subject"],
            fact["time"],
            fact["sequence"],
        )
        assert isinstance(view["sequence"], str)
        assert view["data"]["source"] == "renewal"
        assert {k: view["data"][k] for k in ("lot_id", "credit_type", "amount", "expires_at")} == {
            k: fact["data"][k] for k in ("lot_id", "credit_type", "amount", "expires_at")
        }
        assert fact["data"]["plan"] == "pro", "the fact as it is, with its plan"
        CLOUD_EVENT.validate_json(encode(view))
        CLOUD_EVENT.validate_json(encode(fact))


def test_every_grant_reads_as_credits_granted_with_its_source() -> None:
    ledger = Ledger("demo.toml")
    ledger.ok("open_account", plan="starter")
    ledger.ok("grant", credit_type="credits", amount=10, source="promotional")
    ledger.ok(
        "purchase", pack="credits_1000", payment_reference="pi_1", amount_paid=4000, currency="usd"
    )
    top_up = ledger.ok("request_top_up", credit_type="credits", amount=100).result
    ledger.ok(
        "purchase",
        credit_type="credits",
        top_up_id=top_up["top_up_id"],
        payment_reference="pi_2",
        amount_paid=500,
        currency="usd",
    )
    ledger.ok("change_plan", plan="pro", effective="now")
    ledger.clock.advance(days=1)
    ledger.ok("renew", period_id=ledger.clock.now().date().isoformat())
    records = published(ledger)

    granted = [r for r in records if r["type"] == "credits.granted"]
    events = ledger.events()
    new_lots = [e for e in events if isinstance(e, Account.Granted | Account.AllocationGranted)]
    assert [r["data"]["lot_id"] for r in granted] == [e.lot_id for e in new_lots], "each lot"
    sources = [r["data"]["source"] for r in granted]
    assert sources == [_source(e) for e in new_lots]
    assert {"allocation", "renewal", "promotional", "purchase", "top_up"} <= set(sources)
    assert len({r["id"] for r in records}) == len(records), "ids unique"
    facts = [r for r in records if not r["id"].endswith(":granted")]
    assert [r["type"] for r in facts] == [cloud_event(e)["type"] for e in events]
    for record in records:
        CLOUD_EVENT.validate_json(encode(record))


def _source(event: Any) -> str:
    if isinstance(event, Account.Renewed):
        return "renewal"
    return "allocation" if isinstance(event, Account.AllocationGranted) else str(event.source)


def test_a_grant_view_has_exactly_the_fields_of_a_granted_event(ledger: Ledger) -> None:
    ledger.ok("open_account", plan="pro")
    ledger.ok("grant", credit_type="api_calls", amount=10, source="admin", reference="SUP-1")
    events = ledger.events()
    (grant,) = ledger.only(events, Account.Granted)
    allocation = ledger.only(events, Account.AllocationGranted)[0]
    view = cloud_events(allocation)[1]["data"]
    assert list(view) == list(event_data(grant)), "same fields, same order"
    assert (view["paid"], view["payment_reference"], view["pack"]) == (False, None, None)


def test_the_integer_setting_keeps_contract_one_s_sequence(ledger: Ledger) -> None:
    ledger.ok("open_account", plan="pro")
    records = published(ledger, sequence="integer")
    assert [r["sequence"] for r in records if not r["id"].endswith(":granted")] == [1, 2, 3]
    assert all(type(r["sequence"]) is int for r in records)
    strings = published(ledger)
    assert [r["sequence"] for r in strings][:2] == ["00000000000000000001", "00000000000000000002"]
