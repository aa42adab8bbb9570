"""The ledger's replies and dead letters on their way to Kafka.

A batch does not wait for its replies' acknowledgements (a broker round trip, ~30% of a batch
at 500 commands/s): it hands them to the producer and the next batch is applied meanwhile.
That next batch settles this delivery before handing over its own replies, so replies leave in
the order their commands were applied, and replies that were not acknowledged are sent again
(retried for as long as Kafka is away) before anything after them. Only then are the batch's
offsets reported delivered, to be committed to Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaProducer

from infra.dlq import dead_letter
from infra.event_store.kafka_tables import StoredReply
from infra.metrics import DLQ_MESSAGES
from services.ledger.records import Poison
from services.ledger.replies import REFUSALS, Outgoing, ReplyTopics

log = structlog.get_logger("credits.ledger")

T = TypeVar("T")
# The consumer's retry: `await retry(attempt, doing)`, until it works or the ledger stops.
Retry = Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]]


@dataclass
class Delivery:
    """One batch's replies on their way, and the offsets to commit once they are there."""

    outgoing: list[Outgoing]
    ends: dict[int, int]  # partition -> next offset: the batch's records, applied and answered
    acknowledged: asyncio.Future[Any] = field(init=False)


class ReplyPipeline:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        topics: ReplyTopics,
        retry: Retry,
        on_delivered: Callable[[dict[int, int]], None],
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._retry = retry
        self._on_delivered = on_delivered
        self._current: Delivery | None = None
        # Held from settling one delivery to handing over the next, by a batch, the commit
        # task, a rebalance or a stop: replies after a failed delivery wait for it.
        self._in_order = asyncio.Lock()

    @property
    def current(self) -> Delivery | None:
        return self._current

    async def hand_over(self, replies: list[StoredReply], ends: dict[int, int]) -> None:
        """Settles the last delivery, then hands these replies to the producer."""
        async with self._in_order:
            await self._settle()
            self._current = await self._start(replies, ends)

    async def settle(self) -> None:
        """Waits until the last delivery's replies are acknowledged, sending them again if lost."""
        async with self._in_order:
            await self._settle()

    async def _start(self, replies: list[StoredReply], ends: dict[int, int]) -> Delivery:
        routes = await self._retry(
            lambda: self._topics.routes({r.reply_topic for r in replies}), "looking up reply topics"
        )
        delivery = Delivery([Outgoing(r, routes[r.reply_topic]) for r in replies], ends)
        try:
            for outgoing in delivery.outgoing:
                outgoing.acknowledged = await self._send_one(outgoing)
        except Exception as error:
            log.warning("handing replies over failed; they are sent again", error=repr(error))
        futures = [o.acknowledged for o in delivery.outgoing if o.acknowledged is not None]
        delivery.acknowledged = asyncio.gather(*futures, return_exceptions=True)

        def on_acknowledged(_: asyncio.Future[Any]) -> None:
            # All acknowledged: the offsets are committable at once. Anything else is `_settle`'s.
            if all(_delivered(o) for o in delivery.outgoing):
                self._on_delivered(delivery.ends)

        delivery.acknowledged.add_done_callback(on_acknowledged)
        return delivery

    async def _settle(self) -> None:
        delivery, self._current = self._current, None
        if delivery is None:
            return
        await delivery.acknowledged
        if all(_delivered(o) for o in delivery.outgoing):
            return  # reported by `on_acknowledged`
        await self._retry(lambda: self._send_again(delivery), "sending replies")
        self._on_delivered(delivery.ends)

    async def _send_again(self, delivery: Delivery) -> None:
        """One attempt at the replies not acknowledged yet, in order; raises if any is lost."""
        missing = [o for o in delivery.outgoing if not _delivered(o)]
        for outgoing in missing:
            error = _failure(outgoing)
            if outgoing.route.topic == self._topics.default_topic:
                continue
            if isinstance(error, REFUSALS):
                self._topics.refused(outgoing.reply.reply_topic, error)
            else:
                self._topics.forget(outgoing.reply.reply_topic)
        routes = await self._topics.routes({o.reply.reply_topic for o in missing})
        for outgoing in missing:
            outgoing.route = routes[outgoing.reply.reply_topic]
            outgoing.acknowledged = None
        for outgoing in missing:
            outgoing.acknowledged = await self._send_one(outgoing)
        await asyncio.wait([o.acknowledged for o in missing if o.acknowledged is not None])
        for outgoing in missing:
            error = _failure(outgoing)
            if error is not None:
                raise error

    async def _send_one(self, outgoing: Outgoing) -> asyncio.Future[Any]:
        reply = outgoing.reply
        return await self._producer.send(
            outgoing.route.topic, value=reply.value, key=reply.key, headers=outgoing.headers()
        )


async def send_dead_letters(
    producer: AIOKafkaProducer, dlq_topic: str, poisons: Sequence[Poison]
) -> None:
    """One attempt at putting every poison in the DLQ; returns once all are acknowledged.

    `infra/dlq.dead_letter` bounds each record well below the broker's limit, so no original,
    however large, makes this fail for its size.
    """
    futures = []
    for poison in poisons:
        record = poison.record
        letter = dead_letter(
            code=poison.dlq_code,
            message=poison.message,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=record.headers,
        )
        futures.append(
            await producer.send(
                dlq_topic, value=letter.value, key=letter.key, headers=letter.headers
            )
        )
    await asyncio.gather(*futures)
    for poison in poisons:
        DLQ_MESSAGES.labels(code=poison.dlq_code).inc()
        log.warning(
            "sent to the DLQ",
            code=poison.dlq_code,
            message=poison.message[:200],
            partition=poison.record.partition,
            offset=poison.record.offset,
        )


def _delivered(outgoing: Outgoing) -> bool:
    future = outgoing.acknowledged
    return future is not None and future.done() and _failure(outgoing) is None


def _failure(outgoing: Outgoing) -> BaseException | None:
    future = outgoing.acknowledged
    if future is None or not future.done():
        return ConnectionError("not handed over")
    if future.cancelled():
        return ConnectionError("cancelled")
    return future.exception()
