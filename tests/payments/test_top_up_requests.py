"""Top-up requests as the relay publishes them, and the consumer's bounds (no servers)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from aiokafka import ConsumerRecord

from domain.account import Account
from infra.retry import Backoff
from infra.settings import Settings, Topic
from services.payments import processing
from services.payments.errors import BadInput
from services.payments.handler import PaymentHandler
from services.payments.mapping import Command
from services.payments.processing import RecordProcessor
from services.payments.top_ups import top_up_request
from services.relay.cloud_events import cloud_event
from tests.kit.clock import SettableClock
from tests.kit.ledger import Ledger
from tests.payments.conftest import memory_ledger


def _requested(ledger: Ledger, account: str) -> dict[str, Any]:
    ledger.ok("open_account", account, "open", plan="pro")
    ledger.ok("request_top_up", account, "t1", credit_type="api_calls", amount=500)
    (event,) = [e for e in ledger.events(account) if isinstance(e, Account.TopUpRequested)]
    return cloud_event(event)


def test_a_real_top_up_requested_cloud_event_is_understood() -> None:
    ledger = memory_ledger("seed_001_stripe_credits.toml")
    request = top_up_request(_requested(ledger, "acct-9"))
    assert request is not None
    assert (request.meta.account_id, request.meta.top_up_id, request.meta.credits) == (
        "acct-9",
        "tu-1",
        500,
    )
    assert (request.price_cents, request.currency) == (500, "usd")
    assert request.idempotency_key == "acct-9:tu-1"
    assert request.meta.to_stripe()["credits_kind"] == "top_up"


def test_other_events_are_skipped_and_broken_requests_refused() -> None:
    assert top_up_request({"type": "credits.consumed", "data": {}}) is None
    with pytest.raises(BadInput) as refused:
        top_up_request(
            {"type": "credits.top_up_requested", "subject": "a", "data": {"amount": 1.5}}
        )
    assert refused.value.code == "invalid_cloud_event"


class _Customers:
    async def customer_of(self, account_id: str) -> str | None:
        return "cus_1"

    async def link(self, account_id: str, customer_id: str) -> None:
        raise AssertionError

    async def unlink(self, customer_id: str) -> None:
        raise AssertionError


class _DownStripe:
    calls = 0

    async def saved_payment_method(self, customer_id: str) -> str | None:
        self.calls += 1
        raise stripe.APIConnectionError("Stripe is unreachable")


class _NoPurchases:
    """Top-up requests record no purchase: any use of the table would fail the test."""

    async def sendable(self, commands: list[Command]) -> tuple[Command, ...]:
        assert all(c["type"] != "purchase" for c in commands)
        return tuple(commands)

    async def mark_revokes_sent(self, command_ids: list[str]) -> None:
        assert not command_ids

    async def expire_connections(self) -> None:
        pass


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None
    ) -> None:
        self.sent.append((topic, key, value, headers or []))

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: Any = None
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, []))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _consumer(settings: Settings, api: Any, now: datetime) -> tuple[RecordProcessor, _Producer]:
    purchases: Any = _NoPurchases()
    handler = PaymentHandler(
        api,
        _Customers(),
        purchases,
        cancel_plan="free",
        success_url="https://s",
        cancel_url="https://c",
    )
    producer: Any = _Producer()
    return (
        RecordProcessor(
            settings, handler, purchases, producer, asyncio.Event(), clock=SettableClock(now).now
        ),
        producer,
    )


def _record(settings: Settings, value: dict[str, Any]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=settings.topic(Topic.EVENTS),
        partition=2,
        offset=41,
        timestamp=0,
        timestamp_type=0,
        key=b"acct-9",
        value=json.dumps(value).encode(),
        checksum=None,
        serialized_key_size=6,
        serialized_value_size=1,
        headers=[],
    )


async def test_a_dependency_that_stays_down_is_retried_a_bounded_number_of_times_then_dlq(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processing, "STRIPE_BACKOFF", Backoff(0.001, 0.001, max_attempts=5))
    event = _requested(memory_ledger("seed_001_stripe_credits.toml"), "acct-9")
    api = _DownStripe()
    payments, producer = _consumer(settings, api, datetime.now(UTC))
    await payments.process(_record(settings, event))
    assert api.calls == 5
    ((topic, key, value, headers),) = producer.sent
    assert topic == settings.topic(Topic.DLQ) and key == b"acct-9"
    assert json.loads(value or b"") == event
    assert dict(headers)["error.code"] == b"retries_exhausted"
    assert dict(headers)["source.offset"] == b"41" and dict(headers)["source.partition"] == b"2"


async def test_a_request_older_than_stripe_keeps_idempotency_keys_is_failed_not_charged(
    settings: Settings,
) -> None:
    event = _requested(memory_ledger("seed_001_stripe_credits.toml"), "acct-9")
    api = _DownStripe()  # any call to Stripe would fail the test
    later = datetime.fromisoformat(event["time"]) + timedelta(hours=24)
    payments, producer = _consumer(settings, api, later)
    await payments.process(_record(settings, event))
    assert api.calls == 0
    ((topic, key, value, _),) = producer.sent
    command = json.loads(value or b"")
    assert topic == settings.topic(Topic.COMMANDS) and key == b"acct-9"
    assert (command["type"], command["top_up_id"]) == ("fail_top_up", "tu-1")
    assert command["reason"].startswith("expired")
