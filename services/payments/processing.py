"""One record of the payment consumer, from raw bytes to its end: commands sent, ignored with a
count, or dead-lettered with a code. Nothing in a record can make it raise, but `Stopped`.

- The value is decoded here (no framework parser that could throw first): at most
  `max_record_bytes`, UTF-8, JSON (however deep: too deep is `invalid_json`), an object.
- Stripe (connection errors, 429, 5xx) is retried a bounded number of times
  (`STRIPE_BACKOFF`), then the record goes to the DLQ as `retries_exhausted`.
- PostgreSQL and Kafka are retried for as long as they are down (`infra.retry.UNTIL_BACK`):
  the record waits, the component reports not ready, and resumes when they are back.
- Anything else that goes wrong with one record (a rule nobody foresaw) sends it to the DLQ as
  `unexpected_error`, logged with its traceback; the partition moves on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from domain.commands import parse_command
from domain.errors import LedgerError
from infra.dlq import DlqCode, dead_letter
from infra.metrics import DLQ_MESSAGES
from infra.outages import ASYNCPG_OUTAGE
from infra.retry import UNTIL_BACK, Backoff, RetriesExhausted, Stopped, retry
from infra.settings import Settings, Topic
from infra.tracing import TRACER, context_from_headers, trace_headers
from services.payments import metrics
from services.payments.errors import BadInput
from services.payments.handler import PaymentHandler
from services.payments.mapping import Command, Outcome
from services.payments.purchases import PostgresPurchases
from services.payments.replies import ReplyHandler, parse_reply
from services.payments.stripe_client import TRANSIENT_ERRORS
from services.relay.cloud_events import CONTENT_TYPE

log = structlog.get_logger("credits.payments")

T = TypeVar("T")

# Stripe failing: 5 attempts over ~3 s at most, then the DLQ (the SDK retries twice itself).
STRIPE_BACKOFF = Backoff(first_seconds=0.2, max_seconds=3.0, max_attempts=5)
KAFKA_OUTAGES: tuple[type[Exception], ...] = (KafkaError, OSError)
# Replies and CloudEvents are small; Stripe events are bounded by the webhook's body limit.
MAX_OTHER_RECORD_BYTES = 1024 * 1024


class RecordProcessor:
    def __init__(
        self,
        settings: Settings,
        handler: PaymentHandler,
        purchases: PostgresPurchases,
        producer: AIOKafkaProducer,
        stop: asyncio.Event,
        *,
        on_state: Callable[[bool, str], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        stripe_backoff: Backoff | None = None,
    ) -> None:
        self.handler = handler
        self.purchases = purchases
        self.producer = producer
        self.stop = stop
        self.on_state = on_state
        self.clock = clock
        self.stripe_backoff = stripe_backoff or STRIPE_BACKOFF
        self.replies = ReplyHandler(handler.api, purchases, self._stripe)
        self.stripe_topic = settings.topic(Topic.STRIPE_EVENTS)
        self.events_topic = settings.topic(Topic.EVENTS)
        self.replies_topic = settings.topic(Topic.PAYMENTS_REPLIES)
        self.commands_topic = settings.topic(Topic.COMMANDS)
        self.dlq_topic = settings.topic(Topic.DLQ)
        self.max_stripe_bytes = settings.webhook_max_body_bytes

    async def process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Raises `Stopped` only (the record then stays unacknowledged: it comes again).

        A record with a trace (a webhook's `traceparent` header) is processed in a span of it,
        and the commands it leads to carry that trace to the ledger (infra/tracing.py)."""
        parent = context_from_headers(record.headers or ())
        if parent is None:
            await self._process(record)
            return
        with TRACER.start_as_current_span(
            f"payments {record.topic}", context=parent, kind=SpanKind.CONSUMER
        ):
            await self._process(record)

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        label = "invalid"
        try:
            message = self._decode(record)
            label = _type_label(message)
            outcome = await self._outage_proof(
                lambda: self._stripe(lambda: self._decide(record.topic, message))
            )
            commands = [_validated(c) for c in outcome.commands]
            commands = list(await self._outage_proof(lambda: self.purchases.sendable(commands)))
        except BadInput as bad:
            self._count(record, label, f"dlq_{bad.code}")
            await self._dead_letter(record, bad.code, bad.message)
            return
        except Stopped:
            raise
        except Exception as error:  # one record never stops the others
            log.exception("unexpected failure on one record", source=record.topic)
            self._count(record, label, "dlq_unexpected_error")
            await self._dead_letter(
                record, DlqCode.UNEXPECTED_ERROR, f"{type(error).__name__}: {error}"
            )
            return
        await self._send(commands, outcome.events)
        revokes = [c["command_id"] for c in commands if c["type"] == "revoke"]
        await self._outage_proof(lambda: self.purchases.mark_revokes_sent(revokes))
        self._count(record, label, "commands" if commands else outcome.note or "nothing")
        if commands or outcome.events:
            log.info(
                "sent",
                source=record.topic,
                offset=record.offset,
                commands=[(c["type"], c["command_id"]) for c in commands],
                events=[e["type"] for e in outcome.events],
            )

    # ------------------------------------------------------------------ deciding

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
        value = record.value
        if value is None or not value:
            raise BadInput(DlqCode.INVALID_JSON, "empty record")
        limit = (
            self.max_stripe_bytes if record.topic == self.stripe_topic else MAX_OTHER_RECORD_BYTES
        )
        if len(value) > limit:
            raise BadInput(DlqCode.OVERSIZED, f"{len(value)} bytes > {limit}")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadInput(DlqCode.UNDECODABLE, f"not UTF-8: {error.reason}") from None
        try:
            decoded = json.loads(text)
        except RecursionError:
            raise BadInput(DlqCode.INVALID_JSON, "nested too deep") from None
        except ValueError as error:
            raise BadInput(DlqCode.INVALID_JSON, f"not JSON: {error}") from None
        if not isinstance(decoded, dict):
            raise BadInput(DlqCode.INVALID_JSON, "not a JSON object")
        return decoded

    async def _decide(self, topic: str, message: dict[str, Any]) -> Outcome:
        if topic == self.stripe_topic:
            return await self.handler.stripe_event(message)
        if topic == self.replies_topic:
            return await self.replies.reply(parse_reply(message))
        return await self.handler.cloud_event(message, self.clock())

    # ------------------------------------------------------------------ retrying

    async def _stripe(self, attempt: Callable[[], Awaitable[T]]) -> T:
        try:
            return await retry(
                attempt,
                doing="calling Stripe",
                retry_on=TRANSIENT_ERRORS,
                backoff=self.stripe_backoff,
                stop=self.stop,
            )
        except RetriesExhausted as exhausted:
            cause = exhausted.__cause__
            reason = f"{type(cause).__name__}: {cause}" if cause else str(exhausted)
            raise BadInput(DlqCode.RETRIES_EXHAUSTED, reason) from None

    async def _outage_proof(self, attempt: Callable[[], Awaitable[T]]) -> T:
        return await retry(
            attempt,
            doing="using PostgreSQL",
            retry_on=ASYNCPG_OUTAGE,
            backoff=UNTIL_BACK,
            stop=self.stop,
            on_state=self.on_state,
            before_retry=self.purchases.expire_connections,
        )

    # ------------------------------------------------------------------ Kafka

    async def _send(self, commands: Sequence[Command], events: Sequence[dict[str, Any]]) -> None:
        """Every message acknowledged by the brokers (acks=all), in order, or retried until it
        is: a message sent twice is harmless (command ids, CloudEvent ids)."""
        reply_to = self.replies_topic.encode()
        traced = trace_headers(trace.get_current_span())

        async def attempt() -> None:
            pending = []
            for command in commands:
                # JSON from our own validated dicts: plain, shallow, UTF-8.
                pending.append(
                    await self.producer.send(
                        self.commands_topic,
                        key=command["account_id"].encode(),
                        value=json.dumps(command, separators=(",", ":")).encode(),
                        headers=[
                            ("reply_to", reply_to),
                            ("correlation_id", command["command_id"].encode()),
                            *traced,
                        ],
                    )
                )
            for event in events:
                pending.append(
                    await self.producer.send(
                        self.events_topic,
                        key=event["subject"].encode(),
                        value=json.dumps(event, separators=(",", ":"), sort_keys=True).encode(),
                        headers=[("content-type", CONTENT_TYPE)],
                    )
                )
            for outcome in await asyncio.gather(*pending, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome

        if commands or events:
            await self._kafka(attempt, "sending commands")

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], code: DlqCode, message: str
    ) -> None:
        log.warning("dead letter", source=record.topic, offset=record.offset, code=code.value)
        letter = dead_letter(
            code=code,
            message=message,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=list(record.headers or ()),
        )

        async def attempt() -> None:
            await self.producer.send_and_wait(
                self.dlq_topic, key=letter.key, value=letter.value, headers=letter.headers
            )

        await self._kafka(attempt, "sending to the DLQ")
        DLQ_MESSAGES.labels(code=code.value).inc()

    async def _kafka(self, attempt: Callable[[], Awaitable[None]], doing: str) -> None:
        await retry(
            attempt,
            doing=doing,
            retry_on=KAFKA_OUTAGES,
            backoff=UNTIL_BACK,
            stop=self.stop,
            on_state=self.on_state,
        )

    def _count(self, record: ConsumerRecord[bytes, bytes], label: str, outcome: str) -> None:
        if record.topic == self.stripe_topic:
            metrics.STRIPE_EVENTS.labels(type=label, outcome=outcome).inc()
        elif record.topic == self.events_topic:
            metrics.TOP_UP_REQUESTS.labels(outcome=outcome).inc()
        elif outcome.startswith("dlq_"):
            metrics.REPLIES.labels(command="unknown", status=outcome).inc()


def _validated(command: Command) -> Command:
    """Only commands the ledger can parse leave: a bad mapping goes to the DLQ instead."""
    try:
        parse_command(command)
    except LedgerError as e:
        raise BadInput(DlqCode.INVALID_COMMAND, e.message) from None
    return command


def _type_label(message: dict[str, Any]) -> str:
    event_type = message.get("type")
    return metrics.label(event_type) if isinstance(event_type, str) else "invalid"
