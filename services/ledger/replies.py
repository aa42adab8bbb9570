"""Where the ledger's replies go, and how they get there: `reply_to`, checked, or the default.

A command names its reply topic in `reply_to`. The producer would wait a whole request timeout
for the metadata of a topic that does not exist, and then fail the send, so a reply is never
handed to it for a topic not known to exist. A topic is looked up once (a metadata request
that may not create it) and remembered for a while; a reply whose topic does not exist, or
whose send the broker refuses for good (no authorisation, invalid name, too large), goes to
the default replies topic instead, with a `reply_to.error` header saying why, and is counted
(`credits_ledger_reply_to_fallbacks`). The sender still matches it by its correlation id.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import (
    InvalidTopicError,
    KafkaConnectionError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from aiokafka.protocol.metadata import MetadataRequest

from infra.event_store.kafka_tables import StoredReply
from infra.metrics import REPLY_TO_FALLBACKS
from infra.tracing import TRACEPARENT

# What the broker answers for good: sending the same reply there again cannot succeed.
REFUSALS: tuple[type[Exception], ...] = (
    TopicAuthorizationFailedError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)
# Bounds on what is remembered of reply topics: a flood of records naming made-up topics costs
# one metadata request per batch and never grows memory past these.
MAX_REMEMBERED_TOPICS = 10_000
# A topic found missing is looked up again after this: a client may create it late.
MISSING_FOR_SECONDS = 30.0
# Known topics are checked again this often: one deleted since would fail every send to it.
KNOWN_FOR_SECONDS = 600.0
FALLBACK_HEADER = "reply_to.error"


@dataclass(frozen=True)
class Route:
    topic: str
    error: str | None  # why the reply does not go where `reply_to` said


class ReplyTopics:
    """Which reply topics exist, as far as a recent metadata request said."""

    def __init__(self, producer: AIOKafkaProducer, default_topic: str) -> None:
        self._producer = producer
        self.default_topic = default_topic
        # topic -> (until when the verdict holds, error or None when the topic is fine)
        self._verdicts: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    async def routes(self, topics: set[str]) -> dict[str, Route]:
        """A route for each topic; one metadata request for those not looked up lately."""
        now = time.monotonic()
        unknown = sorted(t for t in topics if t != self.default_topic and not self._fresh(t, now))
        if unknown:
            await self._look_up(unknown, now)
        return {topic: self._route(topic) for topic in topics}

    def refused(self, topic: str, error: BaseException) -> None:
        """The broker refused a send to `topic` for good: later replies go to the default."""
        self._remember(topic, time.monotonic() + MISSING_FOR_SECONDS, f"refused: {error!r}")

    def forget(self, topic: str) -> None:
        """A send to `topic` failed: look it up again before the next one."""
        self._verdicts.pop(topic, None)

    def _route(self, topic: str) -> Route:
        if topic == self.default_topic:
            return Route(topic, None)
        _, error = self._verdicts[topic]
        if error is None:
            return Route(topic, None)
        REPLY_TO_FALLBACKS.labels(reason=error.split(":", 1)[0]).inc()
        return Route(self.default_topic, f"{error} ({topic})")

    def _fresh(self, topic: str, now: float) -> bool:
        verdict = self._verdicts.get(topic)
        return verdict is not None and verdict[0] > now

    async def _look_up(self, topics: list[str], now: float) -> None:
        client = self._producer.client
        node_id = client.get_random_node()
        if node_id is None:
            raise KafkaConnectionError("no broker known to ask for topic metadata")
        # Not created by asking, even where the broker would create topics on first use.
        request = MetadataRequest(topics, allow_auto_topic_creation=False)
        response = await client.send(node_id, request)
        metadata = ClusterMetadata()
        metadata.update_metadata(response)
        for topic in topics:
            if metadata.partitions_for_topic(topic):
                self._remember(topic, now + KNOWN_FOR_SECONDS, None)
            elif topic in metadata.unauthorized_topics:
                self._remember(topic, now + MISSING_FOR_SECONDS, "refused: not authorised")
            else:
                self._remember(topic, now + MISSING_FOR_SECONDS, "unknown_topic")

    def _remember(self, topic: str, until: float, error: str | None) -> None:
        self._verdicts[topic] = (until, error)
        self._verdicts.move_to_end(topic)
        while len(self._verdicts) > MAX_REMEMBERED_TOPICS:
            self._verdicts.popitem(last=False)


@dataclass
class Outgoing:
    """A stored reply on its way: where it goes now, and the producer's promise to deliver it."""

    reply: StoredReply
    route: Route
    acknowledged: asyncio.Future[Any] | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        headers: list[tuple[str, bytes]] = []
        if self.reply.correlation_id is not None:
            headers.append(("correlation_id", self.reply.correlation_id))
        if self.reply.traceparent is not None:
            headers.append((TRACEPARENT, self.reply.traceparent))
        if self.route.error is not None:
            headers.append((FALLBACK_HEADER, self.route.error.encode("utf-8", "backslashreplace")))
        return headers
