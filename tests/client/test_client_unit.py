"""The client's commands, validation and bookkeeping, without Kafka (see conftest.offline)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from credits_client import CreditsClient, InvalidCommand, InvalidReply
from credits_client.balances import LastKnownBalances
from credits_client.transport import ReplyRecord

from domain.commands import parse_command
from domain.replies import Balance, Reply
from infra.settings import Settings
from tests.client.conftest import InMemoryLedgerWire
from tests.kit.ledger import Ledger


async def test_every_typed_method_sends_a_valid_command_keyed_by_account(offline) -> None:
    client, wire = offline
    acct = "typed-1"
    expires_at = datetime.now(UTC) + timedelta(days=1)

    replies = [
        await client.open_account(acct, "starter"),
        await client.consume(acct, "lookup", quantity=2, resource="qr-1", metadata={"k": 1}),
        await client.consume(acct, credit_type="credits", amount=3),
        await client.reserve(acct, "h-1", "lookup", ttl_seconds=60),
        await client.capture(acct, "h-1"),
        await client.reserve(acct, "h-2", credit_type="credits", amount=2, ttl_seconds=60),
        await client.release(acct, "h-2"),
        await client.grant(acct, "credits", 5, source="promotional", expires_at=expires_at),
        await client.purchase(
            acct, credit_type="credits", payment_reference="pi_1", amount_paid=500, currency="USD"
        ),
        await client.revoke(acct, payment_reference="pi_1", reason="refund"),
    ]

    assert [r.status for r in replies] == ["accepted"] * len(replies), [r.error for r in replies]
    types = [json.loads(value)["type"] for _, value in wire.sent]
    assert types == [
        "open_account",
        "consume",
        "consume",
        "reserve",
        "capture",
        "reserve",
        "release",
        "grant",
        "purchase",
        "revoke",
    ]
    assert {key for key, _ in wire.sent} == {acct.encode()}
    command_ids = [json.loads(value)["command_id"] for _, value in wire.sent]
    assert len(set(command_ids)) == len(command_ids), "a fresh command_id per call by default"


async def test_a_command_model_is_sent_as_its_json(offline) -> None:
    client, wire = offline
    model = parse_command(
        {"type": "open_account", "command_id": "m-1", "account_id": "model-1", "plan": "free"}
    )
    reply = await client.send(model)
    assert reply.status == "accepted"
    assert parse_command(wire.sent[0][1]) == model


async def test_a_given_command_id_is_sent_as_is(offline) -> None:
    client, wire = offline
    reply = await client.open_account("given-1", "free", command_id="order-77:open")
    assert reply.command_id == "order-77:open"
    assert json.loads(wire.sent[0][1])["command_id"] == "order-77:open"


async def test_an_invalid_command_is_refused_before_sending(offline) -> None:
    client, wire = offline
    with pytest.raises(InvalidCommand, match="amount"):
        await client.consume("bad-1", credit_type="credits", amount=0)
    with pytest.raises(InvalidCommand, match="account_id"):
        await client.open_account("no spaces allowed", "free")
    with pytest.raises(InvalidCommand, match="type"):
        await client.send({"type": "teleport", "command_id": "x", "account_id": "bad-1"})
    with pytest.raises(InvalidCommand, match="type"):
        not_a_command = Reply(command_id="x", account_id="bad-1", status="accepted")
        await client.send(not_a_command)
    assert wire.sent == []


async def test_balance_is_the_last_reply_seen_not_a_read(offline) -> None:
    client, _ = offline
    assert client.balance("cache-1") is None
    opened = await client.open_account("cache-1", "pro")
    assert client.balance("cache-1") == opened.balances
    spent = await client.consume("cache-1", "lookup")
    assert client.balance("cache-1") == spent.balances
    assert spent.balances["credits"].available == opened.balances["credits"].available - 1


def test_last_known_balances_are_bounded_least_recently_used_out() -> None:
    cache = LastKnownBalances(max_accounts=2)
    balance = {
        "credits": Balance(
            available=1,
            spendable=1,
            held=0,
            allocation_remaining=1,
            purchased_remaining=0,
            next_reset_at=None,
        )
    }
    for account_id in ("a", "b", "c"):
        cache.remember(
            Reply(command_id="c", account_id=account_id, status="accepted", balances=balance)
        )
    assert len(cache) == 2
    assert (cache.get("a"), cache.get("c")) == (None, balance)


async def test_a_reply_for_another_command_is_refused(offline) -> None:
    client, _ = offline

    async def misrouted(*, key: bytes, value: bytes, timeout_seconds: float, headers=()):
        other = Reply(command_id="someone-else", account_id="m-1", status="accepted")
        return "cid", ReplyRecord(correlation_id="cid", value=other.model_dump_json().encode())

    client._transport.request = misrouted
    with pytest.raises(InvalidReply):
        await client.open_account("m-1", "free")


async def test_client_ids_must_be_usable_in_a_topic_name() -> None:
    with pytest.raises(ValueError, match="client_id"):
        CreditsClient(Settings(), client_id="has space")
    client = CreditsClient(Settings(topic_prefix="stg."), client_id="checkout-1")
    assert client.reply_topic == "stg.credits.replies.checkout-1"


def test_the_in_memory_wire_answers_like_the_ledger() -> None:
    # Guards the fixture the tests above rely on: a real service decides.
    wire = InMemoryLedgerWire(Ledger("demo.toml"))
    assert wire.ledger.service.catalog.version == "demo-1"
    wire.ledger.close()
