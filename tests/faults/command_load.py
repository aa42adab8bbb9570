"""Steady load for the fault tests: commands into `credits.commands` at a fixed pace, through
outages (a send the broker does not take yet waits in the producer, which retries it)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from aiokafka.errors import KafkaError

from infra.kafka_clients import acknowledged_producer, stop_producer
from infra.settings import Settings, Topic

ACCOUNTS = 30
COMMANDS_PER_SECOND = 40
# Holds expire this soon, so the scheduler has expiries to send all along.
HOLD_TTL_SECONDS = 3
EVERY_NTH_IS_A_HOLD = 8


class CommandLoad:
    def __init__(self, settings: Settings, prefix: str) -> None:
        self.settings = settings
        self.topic = settings.topic(Topic.COMMANDS)
        self.accounts = [f"{prefix}-{n}" for n in range(ACCOUNTS)]
        self.sent = 0
        self.refused = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._producer = acknowledged_producer(self.settings, "credits-fault-load")
        await self._producer.start()
        for account in self.accounts:
            await self._send(
                {"type": "open_account", "command_id": f"open-{account}", "account_id": account}
                | {"plan": "pro"}
            )
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await stop_producer(self._producer, within_seconds=10)

    async def _run(self) -> None:
        pause_seconds = 1 / COMMANDS_PER_SECOND
        while not self._stop.is_set():
            account = random.choice(self.accounts)
            n = self.sent
            if n % EVERY_NTH_IS_A_HOLD == 0:
                command: dict[str, Any] = {
                    "type": "reserve",
                    "hold_id": f"h{n}",
                    "action": "generate",
                    "ttl_seconds": HOLD_TTL_SECONDS,
                }
            else:
                command = {"type": "consume", "action": "lookup"}
            await self._send(command | {"command_id": f"c{n}", "account_id": account})
            await asyncio.sleep(pause_seconds)

    async def _send(self, command: dict[str, Any]) -> None:
        try:
            delivery = await self._producer.send(
                self.topic,
                key=command["account_id"].encode(),
                value=json.dumps(command).encode(),
            )
        except KafkaError:
            # The producer's buffer is full while the broker is away: this one is not sent.
            self.refused += 1
            await asyncio.sleep(0.5)
            return
        delivery.add_done_callback(_ignore_outcome)
        self.sent += 1


def _ignore_outcome(delivery: asyncio.Future[Any]) -> None:
    if not delivery.cancelled():
        delivery.exception()  # a record dropped at the end: the checks read what was stored
