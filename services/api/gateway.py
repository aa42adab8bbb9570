"""The API's one way to run a command: through Kafka, to the ledger that owns the account.

`POST /v1/accounts/{id}/commands` is a synchronous front door to the same path as any producer:
the command goes to `credits.commands` keyed by account with a correlation id, and the ledger's
reply comes back on this instance's reply topic, `credits.replies.api-<CREDITS_API_INSTANCE_ID>`
(the producer client's machinery, `services/client`). The API itself never writes the event
store, so every account has one writer: the ledger consumer that owns its partition.

The client starts on first use and again after it broke; while Kafka does not answer, calls
fail at once with 503 (`Unavailable`) rather than each waiting for a timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiokafka.errors import KafkaError
from credits_client import ClientClosed, CommandNotSent, CommandTimeout, CreditsClient
from opentelemetry import trace

from domain.replies import Reply
from infra.settings import Settings, Topic
from infra.tracing import trace_headers
from services.api.errors import KAFKA_UNAVAILABLE, Unavailable

log = structlog.get_logger("credits.api.gateway")

# Calls waiting for a reply at once; more wait for a slot, within their own timeout.
MAX_IN_FLIGHT = 1000


class CommandTimedOut(Exception):
    """Sent and acknowledged, but no reply in time: the outcome is readable later."""

    def __init__(self, command_id: str, timeout_seconds: float) -> None:
        super().__init__(command_id)
        self.command_id = command_id
        self.timeout_seconds = timeout_seconds


class CommandGateway:
    def __init__(self, settings: Settings, *, delete_reply_topic_on_stop: bool = False) -> None:
        self.settings = settings
        self.client_id = f"api-{settings.api_instance_id}"
        self.reply_topic = f"{settings.topic(Topic.REPLIES)}.{self.client_id}"
        self._delete_reply_topic_on_stop = delete_reply_topic_on_stop
        self._client: CreditsClient | None = None
        self._lock = asyncio.Lock()

    @property
    def started(self) -> bool:
        return self._client is not None

    async def send(self, command: dict[str, Any]) -> Reply:
        """The ledger's reply; `InvalidCommand` before sending, `CommandTimedOut` after."""
        client = await self._started()
        timeout_seconds = self.settings.api_command_timeout_seconds
        try:
            # The request's trace goes on with the command (infra/tracing.py).
            headers = trace_headers(trace.get_current_span())
            return await client.send(command, timeout_seconds=timeout_seconds, headers=headers)
        except CommandNotSent:
            raise Unavailable(KAFKA_UNAVAILABLE, "Kafka did not take the command; retry") from None
        except CommandTimeout:
            raise CommandTimedOut(str(command.get("command_id")), timeout_seconds) from None
        except (ClientClosed, KafkaError) as error:
            log.warning("command client failed; it restarts", error=f"{type(error).__name__}")
            await self._drop(client)
            raise Unavailable(KAFKA_UNAVAILABLE, "Kafka does not answer; retry") from None

    async def start(self) -> None:
        """Starts the client now (else on first use); raises `Unavailable` if Kafka is down."""
        await self._started()

    async def stop(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await _stop_quietly(client)

    async def _started(self) -> CreditsClient:
        client = self._client
        if client is not None:
            return client
        async with self._lock:
            if self._client is None:
                candidate = CreditsClient(
                    self.settings,
                    client_id=self.client_id,
                    reply_topic=self.reply_topic,
                    delete_reply_topic_on_stop=self._delete_reply_topic_on_stop,
                    timeout_seconds=self.settings.api_command_timeout_seconds,
                    max_in_flight=MAX_IN_FLIGHT,
                    start_timeout_seconds=self.settings.kafka_request_timeout_seconds * 2,
                )
                try:
                    await candidate.start()
                except (KafkaError, OSError, TimeoutError) as error:
                    log.warning("Kafka does not answer", error=f"{type(error).__name__}: {error}")
                    raise Unavailable(KAFKA_UNAVAILABLE, "Kafka does not answer; retry") from None
                self._client = candidate
            return self._client

    async def _drop(self, client: CreditsClient) -> None:
        async with self._lock:
            if self._client is client:
                self._client = None
        await _stop_quietly(client)


async def _stop_quietly(client: CreditsClient) -> None:
    # Stopping while Kafka is down can fail (deleting the reply topic): nothing is lost.
    try:
        await client.stop()
    except (KafkaError, OSError) as error:
        log.warning("command client stopped uncleanly", error=f"{type(error).__name__}")
