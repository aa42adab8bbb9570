"""Nothing in a record can crash or stop the payment consumer (no servers: the Kafka producer,
the tables and Stripe are stand-ins that record what they are asked).

Whatever the bytes of a `stripe.events`, `credits.events` or replies record (random bytes,
invalid UTF-8, JSON nested far past the recursion limit, huge values, NUL and lone surrogates
in every field of well-formed events, null and binary headers), `process` returns, and the
record ends as exactly one of: commands sent (each one the ledger can parse), nothing sent with
a count, or one DLQ record with a code of the one list.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from domain.commands import parse_command
from infra.dlq import DlqCode
from infra.metrics import REGISTRY
from infra.retry import Backoff
from infra.settings import Settings, Topic
from services.payments.handler import HANDLED_STRIPE_EVENTS, PaymentHandler
from services.payments.mapping import Command
from services.payments.processing import RecordProcessor
from services.payments.purchases import PaymentState, RefundPlan
from services.payments.refunds import Refunded

SETTINGS = Settings(topic_prefix="hostile.")
QUICK = Backoff(0.001, 0.001, max_attempts=2)
TOPICS = [SETTINGS.topic(t) for t in (Topic.STRIPE_EVENTS, Topic.EVENTS, Topic.PAYMENTS_REPLIES)]
NASTY_TEXT = st.sampled_from(
    ["\x00", "\ud800", "a\udfffb", "pi_1\x00", "x" * 300, "ok", "acct-1", "credits_200", "\n"]
)
TEXT = st.one_of(NASTY_TEXT, st.text(max_size=40))
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), TEXT
)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)


GOOD_METADATA = {
    "credits_kind": "pack",
    "credits_account_id": "acct-1",
    "credits_credit_type": "credits",
    "credits_amount": "200",
    "credits_pack": "credits_200",
    "credits_top_up_id": "tu-1",
    "credits_plan": "plus",
}
GOOD_OBJECT = {
    "id": "cs_1",
    "mode": "payment",
    "payment_status": "paid",
    "payment_intent": "pi_1",
    "charge": "ch_1",
    "amount_total": 599,
    "amount": 599,
    "amount_refunded": 300,
    "currency": "usd",
    "customer": "cus_1",
    "metadata": GOOD_METADATA,
    "billing_reason": "subscription_cycle",
    "status": "active",
    "last_payment_error": {"code": "card_declined", "message": "declined"},
    "lines": {"data": [{"period": {"start": 1706745600}}]},
}
GOOD_CLOUD_EVENT = {
    "type": "credits.top_up_requested",
    "subject": "acct-1",
    "time": datetime.now(UTC).isoformat(),
    "data": {
        "credit_type": "api_calls",
        "amount": 500,
        "top_up_id": "tu-1",
        "idempotency_key": "acct-1:tu-1",
        "price_cents": 500,
        "currency": "usd",
    },
}
GOOD_REPLY = {
    "command_id": "stripe:pi_1:purchase",
    "account_id": "acct-1",
    "status": "rejected",
    "error": {"code": "not_eligible", "message": "no"},
}


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            paths += _paths(inner, (*prefix, key))
    return paths


@st.composite
def spoiled(draw: st.DrawFn, good: dict[str, Any]) -> dict[str, Any]:
    """`good`, with up to two of its fields (at any depth) replaced by hostile values."""
    value = json.loads(json.dumps(good))
    paths = _paths(good)
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        path = draw(st.sampled_from(paths))
        target = value
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                break
            target = target[key]
        else:
            target[path[-1]] = draw(st.one_of(TEXT, JSON))
    return value


@st.composite
def stripe_events(draw: st.DrawFn) -> dict[str, Any]:
    event = {
        "id": "evt_1",
        "type": draw(st.sampled_from(sorted(HANDLED_STRIPE_EVENTS))),
        "data": {"object": GOOD_OBJECT},
    }
    return draw(spoiled(event))


def _encoded(value: Any) -> bytes:
    return json.dumps(value).encode()  # lone surrogates travel as \ud800 escapes: valid JSON


RAW = st.one_of(
    st.binary(max_size=300),
    st.just(b"[" * 200_000),
    st.just(b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    st.just(b"\xff\xfe{}"),
    st.just(b'{"type": "' + b"x" * 2_000_000 + b'"}'),
    JSON.map(_encoded),
)
STRUCTURED = st.one_of(
    stripe_events().map(_encoded),
    spoiled(GOOD_CLOUD_EVENT).map(_encoded),
    spoiled(GOOD_REPLY).map(_encoded),
)
VALUES = st.one_of(STRUCTURED, STRUCTURED, RAW)
HEADERS = st.lists(
    st.tuples(st.sampled_from(["content-type", "correlation_id", "x"]), st.none() | st.binary()),
    max_size=3,
)


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, list[tuple[str, bytes]]]] = []

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: Any = None
    ) -> asyncio.Future[None]:
        self.sent.append((topic, value, list(headers or [])))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None
    ) -> None:
        assert value is None or len(value) <= 1024 * 1024, "a DLQ record the broker refuses"
        self.sent.append((topic, value, list(headers or [])))


class _Purchases:
    async def sendable(self, commands: list[Command]) -> tuple[Command, ...]:
        return tuple(commands)

    async def mark_revokes_sent(self, command_ids: list[str]) -> None:
        pass

    async def expire_connections(self) -> None:
        pass

    async def plan_refund(self, refunded: Refunded) -> RefundPlan:
        return RefundPlan(PaymentState.APPLIED, ())

    async def payment_of(self, command_id: str) -> None:
        return None


class _Customers:
    async def customer_of(self, account_id: str) -> str | None:
        return "cus_1"

    async def link(self, account_id: str, customer_id: str) -> None:
        pass

    async def unlink(self, customer_id: str) -> None:
        pass


class _Stripe:
    """Answers with hostile objects too."""

    def __init__(self, intent: dict[str, Any]) -> None:
        self.intent = intent

    async def payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        return self.intent

    async def charge(self, charge_id: str) -> dict[str, Any]:
        return {"payment_intent": "pi_1"}

    async def saved_payment_method(self, customer_id: str) -> str | None:
        return "pm_1"

    async def charge_off_session(self, params: dict[str, Any], idempotency_key: str) -> str:
        return "pi_2"

    async def checkout_session(self, params: dict[str, Any], idempotency_key: str | None) -> Any:
        return {"url": "https://checkout.stripe.test/\x00"}


def _records_in_total() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name in ("credits_payments_stripe_events", "credits_payments_top_up_requests")
        or metric.name == "credits_payments_replies"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=st.sampled_from(TOPICS),
    value=VALUES,
    headers=HEADERS,
    intent_metadata=spoiled(GOOD_METADATA),
)
async def test_every_record_ends_as_commands_a_count_or_one_dead_letter(
    topic: str, value: bytes, headers: list[tuple[str, bytes | None]], intent_metadata: Any
) -> None:
    purchases: Any = _Purchases()
    api: Any = _Stripe(
        {"id": "pi_1", "amount": 599, "currency": "usd", "metadata": intent_metadata}
    )
    handler = PaymentHandler(
        api,
        _Customers(),
        purchases,
        cancel_plan="free",
        success_url="https://s",
        cancel_url="https://c",
    )
    producer: Any = _Producer()
    processor = RecordProcessor(
        SETTINGS, handler, purchases, producer, asyncio.Event(), stripe_backoff=QUICK
    )
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic=topic,
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=headers,
    )
    counted = _records_in_total()

    await processor.process(record)

    dead = [s for s in producer.sent if s[0] == SETTINGS.topic(Topic.DLQ)]
    commands = [s for s in producer.sent if s[0] == SETTINGS.topic(Topic.COMMANDS)]
    event("dlq" if dead else "commands" if commands else "counted")
    if dead:
        assert len(dead) == 1 and not commands
        codes = {v for k, v in dead[0][2] if k == "error.code"}
        assert codes <= {c.value.encode() for c in DlqCode} and len(codes) == 1
        code = codes.pop().decode()
        event(f"dlq {code}")
        assert code != DlqCode.UNEXPECTED_ERROR, "every refusal has a rule of its own"
    for _, command, _ in commands:
        parse_command(json.loads(command or b""))
    assert _records_in_total() == counted + 1, "every record is counted once"
