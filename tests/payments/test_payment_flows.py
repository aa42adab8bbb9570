"""Stripe → webhook → stripe.events → payment consumer → credits.commands, on real Kafka, the
fake Stripe (localstripe) sending signed webhooks, and the commands read back from the topic
and applied by the ledger service (in memory, as the ledger consumer will apply them)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
import stripe
from prometheus_client import generate_latest

from domain.account import Account
from infra.metrics import REGISTRY
from infra.settings import Settings, Topic
from services.payments.customers import PostgresCustomers
from services.payments.metadata import PaymentMetadata
from tests.kafka_client import KafkaTestClient
from tests.kit.ledger import Ledger
from tests.kit.stripe_fake import FakeStripe
from tests.payments.conftest import (
    commands_for,
    memory_ledger,
    new_cloud_events,
    read_topic,
    signed,
    stripe_event,
    wait_for_link,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("payments_running")]


def _account(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def _post(webhook_url: str, event: dict[str, Any]) -> httpx.Response:
    body, header = signed(event)
    async with httpx.AsyncClient() as client:
        return await client.post(webhook_url, content=body, headers={"Stripe-Signature": header})


def _paid_with_saved_card(
    client: stripe.StripeClient, account: str, meta: PaymentMetadata | None, card: str
) -> Any:
    customer = client.v1.customers.create(
        params={"metadata": {"credits_account_id": account}, "payment_method": card}
    )
    method = client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"}).data[
        0
    ]
    return client.v1.payment_intents.create(
        params={
            "amount": 599,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": method.id,
            "confirm": True,
            "off_session": True,
            "metadata": meta.to_stripe() if meta else {},
        }
    )


def _plus_ledger(account: str) -> Ledger:
    ledger = memory_ledger("seed_002_plus_credits.toml")
    ledger.ok("open_account", account, "open", plan="plus")
    return ledger


async def test_the_same_webhook_delivered_10_times_concurrently_grants_once(
    webhook_url: str, payment_settings: Settings
) -> None:
    account = _account("plus")
    meta = PaymentMetadata(account, "pack", "credits", 200, pack="credits_200")
    session = {
        "id": f"cs_test_{uuid.uuid4().hex}",
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": f"pi_{uuid.uuid4().hex[:14]}",
        "amount_total": 599,
        "currency": "usd",
        "customer": None,
        "metadata": meta.to_stripe(),
    }
    event = stripe_event("checkout.session.completed", session, f"evt_{uuid.uuid4().hex}")
    answers = await asyncio.gather(*(_post(webhook_url, event) for _ in range(10)))
    assert [a.status_code for a in answers] == [200] * 10

    commands = await commands_for(payment_settings, account, 10, settle_seconds=1.0)
    assert len(commands) == 10
    assert all(c == commands[0] for c in commands)
    assert commands[0]["command_id"] == f"stripe:{session['payment_intent']}:purchase"

    ledger = _plus_ledger(account)
    statuses = [reply.status for reply in ledger.apply(commands)]
    assert statuses == ["accepted"] + ["duplicate"] * 9
    assert ledger.available("credits", account) == 300 + 200


async def test_a_refund_revokes_the_right_amount_and_a_dispute_the_rest(
    webhook_url: str,
    payment_settings: Settings,
    stripe_client: stripe.StripeClient,
    fake_stripe: FakeStripe,
) -> None:
    account = _account("plus")
    meta = PaymentMetadata(account, "pack", "credits", 200, pack="credits_200")
    intent = _paid_with_saved_card(stripe_client, account, meta, "pm_card_visa")
    ledger = _plus_ledger(account)

    (purchase,) = await commands_for(payment_settings, account, 1)
    assert purchase["type"] == "purchase" and purchase["payment_reference"] == intent.id
    ledger.apply([purchase])
    assert ledger.available("credits", account) == 500

    stripe_client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 100})
    commands = await commands_for(payment_settings, account, 3)
    assert [(c["type"], c.get("amount")) for c in commands[1:]] == [
        ("purchase", None),  # the refund carries its purchase: a duplicate here
        ("revoke", 33),
    ]
    ledger.apply(commands)
    # 100 of 599 cents back: floor(200 * 100 / 599) = 33 credits revoked, no more.
    assert ledger.available("credits", account) == 500 - 33

    fake_stripe.dispute(intent.latest_charge.id)
    commands = await commands_for(payment_settings, account, 5)
    assert commands[-1]["type"] == "revoke" and commands[-1]["reason"] == "chargeback"
    ledger.apply(commands)
    assert ledger.available("credits", account) == 300
    (lot,) = [lot for lot in ledger.account(account).lots.values() if lot.source == "purchase"]
    assert (lot.amount, lot.revoked) == (200, 200)


async def test_a_refund_delivered_before_its_purchase_converges(
    webhook_url: str, payment_settings: Settings, stripe_client: stripe.StripeClient
) -> None:
    """The purchase's own webhooks are late: the PaymentIntent gets our metadata only after it
    succeeded (so its `payment_intent.succeeded` maps to nothing), the refund's webhook comes
    first, and the Checkout Session's `completed` is delivered last."""
    account = _account("plus")
    meta = PaymentMetadata(account, "pack", "credits", 200, pack="credits_200")
    intent = _paid_with_saved_card(stripe_client, account, None, "pm_card_visa")
    stripe_client.v1.payment_intents.update(intent.id, params={"metadata": meta.to_stripe()})
    stripe_client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 300})

    early = await commands_for(payment_settings, account, 2)
    assert [c["type"] for c in early] == ["purchase", "revoke"]
    session = {
        "id": f"cs_test_{uuid.uuid4().hex}",
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": intent.id,
        "amount_total": 599,
        "currency": "usd",
        "metadata": meta.to_stripe(),
    }
    late = stripe_event("checkout.session.completed", session, f"evt_{uuid.uuid4().hex}")
    assert (await _post(webhook_url, late)).status_code == 200
    commands = await commands_for(payment_settings, account, 3)

    out_of_order = _plus_ledger(account)
    assert [r.status for r in out_of_order.apply(commands)] == ["accepted", "accepted", "duplicate"]
    in_order = _plus_ledger(account)
    in_order.apply([commands[2], commands[1]])  # purchase, then the refund's revoke
    for ledger in (out_of_order, in_order):
        # 300 of 599 cents back: floor(200 * 300 / 599) = 100 credits.
        assert ledger.available("credits", account) == 300 + 200 - 100
    assert _lots(out_of_order, account) == _lots(in_order, account)


def _lots(ledger: Ledger, account: str) -> list[tuple[Any, ...]]:
    lots = ledger.account(account).lots.values()
    return [(x.lot_id, x.source, x.amount, x.remaining, x.revoked, x.closed) for x in lots]


async def _requested_top_up(
    account: str,
    amount: int,
    card: str | None,
    clients: tuple[stripe.StripeClient, PostgresCustomers, KafkaTestClient],
    settings: Settings,
) -> tuple[Ledger, int]:
    """A pro account (auto top-up off) with `card` saved, that requested a top-up of `amount`,
    published as the relay would; returns the ledger and the balance before the top-up."""
    stripe_client, customers, kafka = clients
    ledger = memory_ledger("seed_001_stripe_credits.toml")
    ledger.ok("open_account", account, "open", plan="pro")
    ledger.ok("configure_top_up", account, "auto-off", credit_type="api_calls", mode="off")
    if card is not None:
        stripe_client.v1.customers.create(
            params={"metadata": {"credits_account_id": account}, "payment_method": card}
        )
        await wait_for_link(customers, account)  # from the customer.created webhook
    ledger.ok("request_top_up", account, "top-up-1", credit_type="api_calls", amount=amount)
    before = ledger.available("api_calls", account)
    await _relay(ledger, account, kafka, settings)
    return ledger, before


async def _relay(ledger: Ledger, account: str, kafka: KafkaTestClient, settings: Settings) -> None:
    """What the outbox relay does: the new events, as CloudEvents, on credits.events."""
    for event in new_cloud_events(ledger, account):
        await kafka.produce(settings.topic(Topic.EVENTS), account, json.dumps(event).encode())


async def test_an_on_demand_top_up_charges_the_saved_card_and_the_webhook_grants(
    webhook_url: str,
    payment_settings: Settings,
    stripe_client: stripe.StripeClient,
    customers: PostgresCustomers,
    kafka: KafkaTestClient,
) -> None:
    account = _account("pro")
    clients = (stripe_client, customers, kafka)
    ledger, before = await _requested_top_up(
        account, 500, "pm_card_visa", clients, payment_settings
    )

    (purchase,) = await commands_for(payment_settings, account, 1)
    assert (purchase["top_up_id"], purchase["amount"], purchase["amount_paid"]) == (
        "tu-1",
        500,
        500,
    )
    charged = stripe_client.v1.payment_intents.retrieve(purchase["payment_reference"])
    assert (charged.amount, charged.status) == (500, "succeeded")
    assert charged.metadata["credits_top_up_id"] == "tu-1"
    ledger.apply([purchase])
    assert ledger.available("api_calls", account) == before + 500
    assert any(isinstance(e, Account.TopUpCompleted) for e in ledger.events(account))


async def test_a_declined_card_fails_the_top_up_with_a_recovery_url_and_no_credits(
    webhook_url: str,
    payment_settings: Settings,
    stripe_client: stripe.StripeClient,
    customers: PostgresCustomers,
    kafka: KafkaTestClient,
    fake_stripe: FakeStripe,
) -> None:
    account = _account("pro")
    clients = (stripe_client, customers, kafka)
    declining = "pm_card_chargeCustomerFail"
    ledger, before = await _requested_top_up(account, 700, declining, clients, payment_settings)

    (failed,) = await commands_for(payment_settings, account, 1)
    assert failed["type"] == "fail_top_up" and failed["top_up_id"] == "tu-1"
    assert failed["reason"].startswith("card_declined")
    recovery = next(
        r for r in fake_stripe.checkout_requests() if r["session"]["url"] == failed["recovery_url"]
    )
    assert recovery["form"]["metadata"]["credits_top_up_id"] == "tu-1"
    assert recovery["form"]["line_items"][0]["price_data"]["unit_amount"] == "700"
    ledger.apply([failed])
    (event,) = [e for e in ledger.events(account) if isinstance(e, Account.TopUpFailed)]
    assert event.recovery_url == failed["recovery_url"]
    assert ledger.available("api_calls", account) == before


async def test_without_a_saved_card_the_top_up_fails_at_once_with_a_recovery_url(
    payment_settings: Settings,
    stripe_client: stripe.StripeClient,
    customers: PostgresCustomers,
    kafka: KafkaTestClient,
) -> None:
    account = _account("pro")
    clients = (stripe_client, customers, kafka)
    ledger, _ = await _requested_top_up(account, 100, None, clients, payment_settings)
    (failed,) = await commands_for(payment_settings, account, 1)
    assert failed["reason"].startswith("no_saved_payment_method")
    assert failed["recovery_url"].startswith("https://checkout.stripe.test/")
    assert ledger.apply([failed])[0].status == "accepted"


async def test_auto_top_up_end_to_end_grants_after_payment_and_holds_the_monthly_cap(
    webhook_url: str,
    payment_settings: Settings,
    stripe_client: stripe.StripeClient,
    customers: PostgresCustomers,
    kafka: KafkaTestClient,
) -> None:
    """Seed 001: below 100 buy 500, at most 5 times a calendar month."""
    account = _account("pro")
    ledger = memory_ledger("seed_001_stripe_credits.toml")
    ledger.ok("open_account", account, "open", plan="pro")
    stripe_client.v1.customers.create(
        params={"metadata": {"credits_account_id": account}, "payment_method": "pm_card_visa"}
    )
    await wait_for_link(customers, account)
    granted = 0
    for crossing in range(1, 7):  # bounded: 5 top-ups, then a crossing that must not charge
        spend = ledger.available("api_calls", account) - 50
        ledger.ok("consume", account, f"spend-{crossing}", credit_type="api_calls", amount=spend)
        await _relay(ledger, account, kafka, payment_settings)
        if crossing <= 5:
            commands = await commands_for(payment_settings, account, granted + 1)
            assert commands[-1]["top_up_id"] == f"tu-{crossing}"
            ledger.apply(commands[-1:])
            granted += 1
            assert ledger.available("api_calls", account) == 50 + 500
    requested = [e for e in ledger.events(account) if isinstance(e, Account.TopUpRequested)]
    assert len(requested) == 5
    late = await commands_for(payment_settings, account, 6, timeout_seconds=3.0)
    assert len(late) == 5, "no charge beyond the monthly cap"
    assert ledger.available("api_calls", account) == 50


async def test_subscription_cycles_renew_and_changes_move_the_plan(
    webhook_url: str, payment_settings: Settings
) -> None:
    account = _account("plus")
    subscription = {
        "id": "sub_1",
        "object": "subscription",
        "status": "active",
        "metadata": {"credits_account_id": account, "credits_plan": "plus"},
    }
    invoice = {
        "id": f"in_{uuid.uuid4().hex[:14]}",
        "object": "invoice",
        "billing_reason": "subscription_cycle",
        "lines": {"data": [{"period": {"start": 1704067200, "end": 1706745600}}]},
        "parent": {"subscription_details": {"metadata": {"credits_account_id": account}}},
    }
    for event in (
        stripe_event("invoice.paid", invoice, f"evt_{uuid.uuid4().hex}"),
        stripe_event("customer.subscription.updated", subscription, f"evt_{uuid.uuid4().hex}"),
        stripe_event(
            "customer.subscription.deleted",
            subscription | {"status": "canceled"},
            f"evt_{uuid.uuid4().hex}",
        ),
    ):
        assert (await _post(webhook_url, event)).status_code == 200
    commands = await commands_for(payment_settings, account, 3)
    by_type = {c["type"]: c for c in commands}
    assert by_type["renew"]["period_id"] == "2024-01-01"
    plans = [c["plan"] for c in commands if c["type"] == "change_plan"]
    assert sorted(plans) == ["free", "plus"]

    ledger = memory_ledger("seed_002_plus_credits.toml")
    ledger.ok("open_account", account, "open", plan="free")
    ledger.ok("change_plan", account, "up", plan="plus")
    ledger.ok(
        "purchase",
        account,
        "buy",
        pack="credits_200",
        payment_reference="pi_x",
        amount_paid=599,
        currency="usd",
    )
    deleted = next(c for c in commands if c.get("plan") == "free")
    assert ledger.apply([by_type["renew"], deleted])[1].status == "accepted"
    assert ledger.account(account).plan == "free"
    assert ledger.account(account).balances(ledger.catalog)["credits"]["purchased_remaining"] == 200


async def test_unknown_types_are_counted_and_bad_input_goes_to_the_dlq_without_stopping(
    webhook_url: str, payment_settings: Settings, kafka: KafkaTestClient
) -> None:
    def unhandled() -> float:
        sample = REGISTRY.get_sample_value(
            "credits_payments_stripe_events_total",
            {"type": "balance.available", "outcome": "unhandled_type"},
        )
        return sample or 0.0

    before = unhandled()
    assert (
        await _post(webhook_url, stripe_event("balance.available", {}, f"evt_{uuid.uuid4().hex}"))
    ).status_code == 200

    account = _account("plus")
    bad_id = f"evt_{uuid.uuid4().hex}"
    meta = PaymentMetadata(account, "pack", "credits", 200, pack="credits_200").to_stripe()
    bad = {
        "id": "cs_bad",
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": "pi_bad",
        "amount_total": 599,
        "currency": "usd",
        "metadata": meta | {"credits_amount": "lots"},
    }
    good = bad | {"id": "cs_good", "payment_intent": "pi_good", "metadata": meta}
    topic = payment_settings.topic(Topic.STRIPE_EVENTS)
    # Same key, hence the same partition, in this order: not JSON, bad metadata, then a good one.
    partition, offset = await kafka.produce(topic, bad_id, b"{not json")
    await kafka.produce(
        topic, bad_id, json.dumps(stripe_event("checkout.session.completed", bad, bad_id)).encode()
    )
    await kafka.produce(
        topic, bad_id, json.dumps(stripe_event("checkout.session.completed", good, bad_id)).encode()
    )

    (purchase,) = await commands_for(payment_settings, account, 1)
    assert purchase["payment_reference"] == "pi_good"
    dead = await read_topic(
        payment_settings,
        Topic.DLQ,
        lambda v: v.get("id") == bad_id or "_raw" in v,
        2,
        settle_seconds=0.5,
    )
    mine = [
        (h, v)
        for _, v, h in dead
        if h.get("source.offset") in (str(offset).encode(), str(offset + 1).encode())
        and h.get("source.partition") == str(partition).encode()
    ]
    assert sorted(h["error.code"] for h, _ in mine) == [b"invalid_json", b"invalid_metadata"]
    assert all(h["source.topic"] == topic.encode() and h["error.message"] for h, _ in mine)
    assert unhandled() == before + 1


async def test_after_a_webhook_the_payment_counters_are_in_the_metrics_exposition(
    webhook_url: str,
) -> None:
    """One registry per process (infra.metrics.REGISTRY, what /metrics serves)."""
    event_type = f"test.metrics_{uuid.uuid4().hex[:8]}"
    assert (
        await _post(webhook_url, stripe_event(event_type, {}, f"evt_{uuid.uuid4().hex}"))
    ).status_code == 200
    handled = (
        f'credits_payments_stripe_events_total{{outcome="unhandled_type",type="{event_type}"}} 1.0'
    )
    async with asyncio.timeout(20):
        while handled not in generate_latest(REGISTRY).decode():
            await asyncio.sleep(0.1)
    exposition = generate_latest(REGISTRY).decode()
    assert 'credits_payments_webhooks_total{outcome="accepted"}' in exposition
    for name in ("replies", "refunds", "top_up_requests"):
        assert f"# TYPE credits_payments_{name}_total counter" in exposition


async def test_hostile_records_on_real_kafka_go_to_the_dlq_and_good_ones_still_purchase(
    webhook_url: str, payment_settings: Settings, kafka: KafkaTestClient
) -> None:
    """Produced straight to the topics (not through the webhook): deep nesting, invalid UTF-8,
    NUL and surrogates in metadata, a value near the broker's 1 MiB limit, null and binary
    headers; then a good event on the same partition, which must still become its purchase."""
    account = _account("plus")
    key = f"evt_{uuid.uuid4().hex}"
    meta = PaymentMetadata(account, "pack", "credits", 200, pack="credits_200").to_stripe()
    session = {
        "id": "cs_h",
        "mode": "payment",
        "payment_status": "paid",
        "amount_total": 599,
        "currency": "usd",
        "metadata": meta,
    }

    def completed(**fields: Any) -> bytes:
        event = stripe_event("checkout.session.completed", session | fields, key)
        return json.dumps(event).encode()

    hostile = [
        b"[" * 100_000,
        b"\xff\xfe not utf-8",
        completed(payment_intent="pi_h\x00"),
        completed(payment_intent="pi_h2", metadata=meta | {"credits_pack": "\ud800"}),
        b'{"id": "' + b"x" * 900_000 + b'"}',
    ]
    topic = payment_settings.topic(Topic.STRIPE_EVENTS)
    headers: list[tuple[str, Any]] = [("nothing", None), ("binary", b"\xff\x00\xfe")]
    # (partition, offset): other tests dead-letter records of this topic from other partitions.
    offsets = [await kafka.produce(topic, key, value, headers) for value in hostile]
    await kafka.produce(topic, key, completed(payment_intent="pi_after_hostile"), headers)

    (purchase,) = await commands_for(payment_settings, account, 1)
    assert purchase["payment_reference"] == "pi_after_hostile"
    codes: dict[tuple[int, int], str] = {}
    async with asyncio.timeout(30):
        while not set(offsets) <= codes.keys():
            dead = await read_topic(
                payment_settings, Topic.DLQ, lambda v: True, 100_000, timeout_seconds=1.0
            )
            codes = {
                (int(h["source.partition"]), int(h["source.offset"])): h["error.code"].decode()
                for _, _, h in dead
                if h.get("source.topic") == topic.encode()
            }
    assert [codes.get(o) for o in offsets] == [
        "invalid_json",
        "undecodable",
        "invalid_stripe_event",
        "invalid_metadata",
        "oversized",
    ]
