"""Holds for streaming calls: an LLM call reserves what its longest answer could cost, bills the
tokens as they stream (part captures), keeps the hold alive while the stream runs (extend), and
closes it at the end; an account cannot pile up open holds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.account import Account
from tests.kit.ledger import Ledger

CATALOG = """
version = "streaming-1"
max_hold_ttl_seconds = 600
max_open_holds = 2

[credit_types.tokens]
unit = "token"

[actions.chat]
credit_type = "tokens"
cost = 1
max_quantity = 500   # the longest answer a chat call may stream

[plans.pro]
name = "Pro"
allocations.tokens = { amount = 2000, period = "month", renewal = "reset" }
"""


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger(CATALOG)
    ledger.ok("open_account", plan="pro")
    return ledger


def test_a_reserve_without_quantity_holds_the_actions_longest_answer(ledger):
    reply = ledger.ok("reserve", hold_id="s1", action="chat", ttl_seconds=60)
    assert reply.result["amount"] == 500
    assert (reply.balances["tokens"].available, reply.balances["tokens"].held) == (1500, 500)


def test_a_stream_is_billed_in_parts_and_closed_with_the_rest_returned(ledger):
    ledger.ok("reserve", hold_id="s1", action="chat", ttl_seconds=60)
    ledger.new_events()
    first = ledger.ok("capture", hold_id="s1", amount=120, final=False)
    second = ledger.ok("capture", hold_id="s1", amount=80, final=False)
    assert (first.result["held_remaining"], second.result["held_remaining"]) == (380, 300)
    assert (second.balances["tokens"].available, second.balances["tokens"].held) == (1500, 300)
    parts = ledger.new_events()
    assert ledger.names(parts) == ["PartCaptured", "PartCaptured"]
    assert [p.amount for p in parts] == [120, 80]

    last = ledger.ok("capture", hold_id="s1", amount=50)
    (closed,) = ledger.new_events()
    assert isinstance(closed, Account.Captured)
    assert (closed.amount, closed.released) == (50, [{"lot_id": "lot-1", "amount": 250}])
    assert (last.balances["tokens"].available, last.balances["tokens"].held) == (1750, 0)
    ledger.rejected("capture", "hold_not_found", hold_id="s1", amount=1, final=False)


def test_a_part_capture_of_nothing_or_of_more_than_held_is_refused(ledger):
    ledger.ok("reserve", hold_id="s1", action="chat", quantity=10, ttl_seconds=60)
    ledger.rejected("capture", "invalid_command", hold_id="s1", amount=0, final=False)
    ledger.rejected("capture", "invalid_command", hold_id="s1", amount=11, final=False)
    everything = ledger.ok("capture", hold_id="s1", amount=10, final=False)
    assert everything.result["held_remaining"] == 0, "capturing all of it closes the hold"
    assert ledger.names(ledger.new_events())[-1] == "Captured"


def test_extending_keeps_a_running_stream_alive_past_its_first_expiry(ledger):
    ledger.ok("reserve", hold_id="s1", action="chat", ttl_seconds=60)
    ledger.clock.advance(seconds=50)
    extended = ledger.ok("extend_hold", hold_id="s1", ttl_seconds=120)
    assert (
        extended.result["expires_at"] == (ledger.clock.now() + timedelta(seconds=120)).isoformat()
    )
    ledger.clock.advance(seconds=100)  # 150 s after the reserve: past the first expiry
    ledger.ok("capture", hold_id="s1", amount=30, final=False)
    ledger.clock.advance(seconds=100)  # past the extended one
    ledger.rejected("capture", "hold_expired", hold_id="s1", amount=1)
    expired = ledger.ok("expire")  # what the scheduler sends at the hold's expiry
    assert ledger.names(ledger.new_events())[-1] == "HoldExpired"
    assert (expired.balances["tokens"].available, expired.balances["tokens"].held) == (1970, 0)


def test_an_extension_never_brings_an_expiry_forward_nor_goes_past_the_catalogs_ttl(ledger):
    ledger.ok("reserve", hold_id="s1", action="chat", ttl_seconds=300)
    ledger.new_events()
    shorter = ledger.ok("extend_hold", hold_id="s1", ttl_seconds=10)
    assert ledger.new_events() == [], "nothing changed, nothing written"
    expires_at = ledger.account().holds.open_hold("s1").expires_at
    assert shorter.result["expires_at"] == expires_at.isoformat()
    ledger.rejected("extend_hold", "invalid_command", hold_id="s1", ttl_seconds=601)
    ledger.rejected("extend_hold", "hold_not_found", hold_id="nope", ttl_seconds=60)


def test_an_account_cannot_pile_up_open_holds(ledger):
    ledger.ok("reserve", hold_id="s1", action="chat", quantity=1, ttl_seconds=60)
    ledger.ok("reserve", hold_id="s2", action="chat", quantity=1, ttl_seconds=60)
    refused = ledger.rejected(
        "reserve", "hold_limit_reached", hold_id="s3", action="chat", quantity=1, ttl_seconds=60
    )
    assert "2 holds are open" in refused.error.message
    ledger.ok("release", hold_id="s1")
    ledger.ok("reserve", hold_id="s3", action="chat", quantity=1, ttl_seconds=60)


def test_retried_streaming_commands_apply_once(ledger):
    ledger.ok("reserve", hold_id="s1", action="chat", ttl_seconds=60)
    first = ledger.send("capture", command_id="part-1", hold_id="s1", amount=40, final=False)
    again = ledger.send("capture", command_id="part-1", hold_id="s1", amount=40, final=False)
    assert (first.status, again.status) == ("accepted", "duplicate")
    extend = ledger.send("extend_hold", command_id="ext-1", hold_id="s1", ttl_seconds=200)
    extend_again = ledger.send("extend_hold", command_id="ext-1", hold_id="s1", ttl_seconds=200)
    assert (extend.status, extend_again.status) == ("accepted", "duplicate")
    assert ledger.balance("tokens")["held"] == 460
