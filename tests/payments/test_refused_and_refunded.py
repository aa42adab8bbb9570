"""Every charge ends as credits or a refund, and refunds revoke from cumulative amounts: the whole
loop on real parts. A Stripe of its own (localstripe, so no other test's webhooks reach it), the
webhook endpoint, the payment consumer and the ledger consumer on PostgreSQL and Kafka, with
topics and a database of this module's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
import uvicorn
from eventsourcing.application import AggregateNotFoundError

from contracts.asyncapi.cloud_events import cloud_event_adapter
from contracts.asyncapi.document import asyncapi_document
from domain.account import Account
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.metrics import REGISTRY
from infra.settings import Settings, Topic
from services.cli.supervisor import run_ledger
from services.payments.consumer import run_payments
from services.payments.http import payments_producer
from services.payments.metadata import PaymentMetadata
from services.payments.purchases import PaymentState, PostgresPurchases
from services.payments.replies import refund_key
from tests.databases import fresh_database
from tests.kafka_client import KafkaTestClient, created_topics
from tests.kit.asyncapi_schemas import schema_errors
from tests.kit.ports import free_port
from tests.kit.stripe_fake import FakeStripe
from tests.payments.conftest import payments_app, read_topic, signed, stripe_event

pytestmark = pytest.mark.integration

SEED_002 = (
    Path(__file__).resolve().parents[2] / "domain" / "catalogs" / "seed_002_plus_credits.toml"
)
SECRET = "whsec_refund_tests"
ASYNCAPI = asyncapi_document()
WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Loop:
    settings: Settings
    stripe: stripe.StripeClient
    webhook_url: str
    kafka: KafkaTestClient
    purchases: PostgresPurchases


@pytest.fixture(scope="module")
def own_stripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeStripe]:
    fake = FakeStripe().start(tmp_path_factory.mktemp("stripe") / "refunds_stripe.log")
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
async def loop(
    base_settings: Settings, settings: Settings, own_stripe: FakeStripe
) -> AsyncIterator[Loop]:
    own = settings.model_copy(
        update={
            "topic_prefix": f"{settings.topic_prefix}refunds.",
            "pg_database": f"{settings.pg_database}_refunds",
            "stripe_api_key": "sk_test_refunds",
            "stripe_api_base": own_stripe.api_base,
            "stripe_webhook_secrets": SECRET,
            "catalog_path": SEED_002,
        }
    )
    with fresh_database(base_settings, own.pg_database):
        async with created_topics(own):
            producer = payments_producer(own)
            await producer.start()
            port = free_port()
            server = uvicorn.Server(
                uvicorn.Config(
                    payments_app(own, producer=producer),
                    host="127.0.0.1",
                    port=port,
                    log_config=None,
                    lifespan="off",
                )
            )
            serving = asyncio.create_task(server.serve())
            stop = asyncio.Event()
            components = [
                asyncio.create_task(run_ledger(own, stop)),
                asyncio.create_task(run_payments(own, stop)),
            ]
            kafka = KafkaTestClient(own)
            await kafka.start()
            purchases = await PostgresPurchases.open(own)
            try:
                async with asyncio.timeout(10):
                    while not server.started:
                        await asyncio.sleep(0.05)
                url = f"http://127.0.0.1:{port}/webhooks/stripe"
                own_stripe.register_webhook(url, SECRET)
                client = stripe.StripeClient(
                    own.stripe_api_key, base_addresses={"api": own.stripe_api_base}
                )
                yield Loop(own, client, url, kafka, purchases)
            finally:
                stop.set()
                for task in components:
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait_for(task, timeout=20)
                await purchases.close()
                await kafka.stop()
                server.should_exit = True
                await serving
                await producer.stop()


async def _open(loop: Loop, account: str, plan: str) -> None:
    command = {"type": "open_account", "command_id": "open", "account_id": account, "plan": plan}
    await loop.kafka.produce(
        loop.settings.topic(Topic.COMMANDS), account, json.dumps(command).encode()
    )
    await _account_when(loop.settings, account, lambda a: a.plan == plan)


async def _account_when(settings: Settings, account_id: str, done: Any) -> Account:
    app = LedgerApplication(env=event_store_env(settings))
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                with contextlib.suppress(AggregateNotFoundError):
                    account: Account = await asyncio.to_thread(app.repository.get, account_id)
                    if done(account):
                        return account
                await asyncio.sleep(0.2)
    finally:
        app.close()


async def _eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                value = await check()
                if value:
                    return value
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(what) from None


def _paid(loop: Loop, meta: PaymentMetadata) -> Any:
    """A PaymentIntent of ours, paid with a saved card (localstripe sends its webhooks)."""
    customer = loop.stripe.v1.customers.create(params={"payment_method": "pm_card_visa"})
    card = loop.stripe.v1.payment_methods.list(params={"customer": customer.id, "type": "card"})
    return loop.stripe.v1.payment_intents.create(
        params={
            "amount": 599,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": card.data[0].id,
            "confirm": True,
            "off_session": True,
            "metadata": meta.to_stripe(),
        }
    )


async def _post(url: str, event: dict[str, Any]) -> int:
    body, header = signed(event, SECRET)
    async with httpx.AsyncClient() as client:
        response = await client.post(url, content=body, headers={"Stripe-Signature": header})
        return response.status_code


def _handled(event_type: str, outcome: str | None = None) -> float:
    """Stripe events of this type the payment consumer finished (with this outcome)."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "credits_payments_stripe_events"
        for sample in metric.samples
        if sample.name.endswith("_total")
        and sample.labels["type"] == event_type
        and outcome in (None, sample.labels["outcome"])
    )


async def _handled_at_least(counts: dict[str, float]) -> None:
    async def done() -> bool:
        return all(_handled(t) >= n for t, n in counts.items())

    await _eventually(done, f"the payment consumer did not handle {counts}")


async def test_a_refused_paid_purchase_delivered_5_times_is_refunded_once_with_no_credits(
    loop: Loop,
) -> None:
    account = f"free-{uuid.uuid4().hex[:10]}"
    await _open(loop, account, "free")  # seed 002: only PLUS may buy the pack
    meta = PaymentMetadata(account, "pack", "credits", 200, pack="credits_200")
    before = {t: _handled(t) for t in ("checkout.session.completed", "payment_intent.succeeded")}
    refunds_before = _handled("charge.refunded", "refused_payment")
    intent = _paid(loop, meta)  # localstripe sends payment_intent.succeeded: a 6th delivery
    session = {
        "id": f"cs_test_{uuid.uuid4().hex}",
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": intent.id,
        "amount_total": 599,
        "currency": "usd",
        "customer": None,
        "metadata": meta.to_stripe(),
    }
    event = stripe_event("checkout.session.completed", session, f"evt_{uuid.uuid4().hex}")
    statuses = await asyncio.gather(*(_post(loop.webhook_url, event) for _ in range(5)))
    assert statuses == [200] * 5

    command_id = f"stripe:{intent.id}:purchase"

    async def refunded() -> Any:
        payment = await loop.purchases.payment_of(command_id)
        return payment if payment and payment.state == PaymentState.REFUNDED else None

    payment = await _eventually(refunded, "the refused payment was not refunded")
    assert payment.refusal_code == "not_eligible"

    # Every delivery handled (5 sessions, the intent's own event), and the webhook of the refund.
    await _handled_at_least(
        {
            "checkout.session.completed": before["checkout.session.completed"] + 5,
            "payment_intent.succeeded": before["payment_intent.succeeded"] + 1,
        }
    )

    async def refund_webhook_handled() -> bool:
        return _handled("charge.refunded", "refused_payment") > refunds_before

    await _eventually(refund_webhook_handled, "the refund's own webhook was not handled")

    stripe_refunds = loop.stripe.v1.refunds.list(params={"payment_intent": intent.id}).data
    assert [(r.id, r.amount) for r in stripe_refunds] == [(payment.refund_id, 599)]
    refund = stripe_refunds[0].to_dict()
    print(f"\nrefund of the refused purchase {intent.id}: {json.dumps(refund, sort_keys=True)}")
    assert refund["metadata"]["credits_refusal"] == "not_eligible"

    account_now = await _account_when(loop.settings, account, lambda a: True)
    assert [lot for lot in account_now.lots.values() if lot.source == "purchase"] == []
    assert account_now.available("credits") == 20  # the free plan's allocation, nothing more

    events = await read_topic(
        loop.settings, Topic.EVENTS, lambda e: e.get("subject") == account, 1, settle_seconds=1
    )
    refunded_events = [e for _, e, _ in events if e["type"] == "credits.payment_refunded"]
    assert {e["id"] for e in refunded_events} == {f"payment_refunded:{intent.id}"}
    assert refunded_events[0]["data"]["refund_id"] == payment.refund_id
    assert refunded_events[0]["data"]["refusal_code"] == "not_eligible"
    # The contract (docs/asyncapi.json is generated from the same models).
    cloud_event_adapter().validate_json(json.dumps(refunded_events[0]))
    assert schema_errors(refunded_events[0], ASYNCAPI, "CloudEvent") == []
    assert (await loop.purchases.unapplied([PaymentState.REFUNDED]))[-1:] != []
    assert refund_key(intent.id) == f"credits-refund:{intent.id}"


async def test_two_partial_refunds_in_one_second_revoke_floor_of_the_total_share(
    loop: Loop,
) -> None:
    """200 credits for 599 cents, 100 + 200 refunded: floor(200 * 300 / 599) = 100, whatever
    order and copies of the `charge.refunded` events arrive in."""
    account = f"plus-{uuid.uuid4().hex[:10]}"
    await _open(loop, account, "plus")
    meta = PaymentMetadata(account, "pack", "credits", 200, pack="credits_200")
    intent = _paid(loop, meta)
    await _account_when(loop.settings, account, lambda a: a.available("credits") == 500)

    refunded_before = _handled("charge.refunded")
    # Both in one second of Stripe's clock (`created` is in whole seconds): started right after
    # a second begins, the two calls take a few milliseconds on a quiet machine.
    await asyncio.sleep(1.0 - time.time() % 1.0)
    first = loop.stripe.v1.refunds.create(params={"payment_intent": intent.id, "amount": 100})
    second = loop.stripe.v1.refunds.create(params={"payment_intent": intent.id, "amount": 200})
    assert first.created == second.created, "both refunds in the same second"
    # Stripe repeats and reorders: the later state first, then the earlier one, twice each.
    charge = loop.stripe.v1.charges.retrieve(intent.latest_charge.id).to_dict()
    for refunded_cents in (300, 100, 300, 100):
        late = stripe_event(
            "charge.refunded", charge | {"amount_refunded": refunded_cents}, f"evt_{uuid.uuid4()}"
        )
        assert await _post(loop.webhook_url, late) == 200

    def revoked_100(a: Account) -> bool:
        lots = [lot for lot in a.lots.values() if lot.source == "purchase"]
        return [lot.revoked for lot in lots] == [100]

    # Ours and the two localstripe sends for its refunds, all handled; then the ledger is read.
    await _handled_at_least({"charge.refunded": refunded_before + 6})
    settled = await _account_when(loop.settings, account, revoked_100)
    (lot,) = [lot for lot in settled.lots.values() if lot.source == "purchase"]
    print(
        f"\ntwo refunds of {intent.id} created at {first.created} (100 + 200 of 599 cents): "
        f"lot of {lot.amount} credits, {lot.revoked} revoked = floor(200 * 300 / 599)"
    )
    assert (lot.amount, lot.revoked) == (200, 100)
    assert settled.available("credits") == 300 + 200 - 100
