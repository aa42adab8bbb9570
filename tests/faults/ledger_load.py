"""Steady load on a ledger process, and what it answered, for fault tests.

`SteadyLoad` sends consumes at a fixed rate to a set of accounts, each command counted
as acknowledged only once Kafka acknowledged it, and reads every reply with the time it came.
`check_exactly_once` then says whether every acknowledged command was answered and applied
exactly once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from domain.account import Account
from infra.event_store.env import event_store_env
from infra.kafka_clients import acknowledged_producer
from infra.kafka_clients import consumer as kafka_consumer
from infra.ledger_application import LedgerApplication
from infra.settings import Settings, Topic
from services.ledger.service import LedgerService, SystemClock
from tests.ledger_harness import DEMO

# Bounds: a fault test that waits longer than these has failed, it does not hang.
START_TIMEOUT_SECONDS = 60.0
ANSWER_TIMEOUT_SECONDS = 120.0
# How long a command may wait for Kafka's acknowledgement before the load counts it unsent.
SEND_TIMEOUT_SECONDS = 5.0
CLIENT_STOP_SECONDS = 5.0


@dataclass
class SteadyLoad:
    """Consumes at `rate_per_second` over `accounts`, and every reply with its arrival time."""

    settings: Settings
    accounts: list[str]
    rate_per_second: float
    acknowledged: dict[str, str] = field(default_factory=dict)  # command id -> account
    unsent: int = 0
    answered_at: dict[str, float] = field(default_factory=dict)
    answers: dict[str, list[str]] = field(default_factory=dict)  # command id -> statuses
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _sending: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._sending.set()
        reading = asyncio.create_task(self._read_replies())
        self._tasks = [reading, asyncio.create_task(self._send())]
        # Replies are read from the end of the topic: start sending once the reader is placed.
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            while not self._reader_ready:
                await asyncio.sleep(0.05)

    async def stop_sending(self) -> None:
        self._sending.clear()
        await asyncio.sleep(0.5)  # the last send in flight is acknowledged or counted unsent

    async def wait_until_answered(self) -> None:
        """Every acknowledged command answered (raises after ANSWER_TIMEOUT_SECONDS)."""
        async with asyncio.timeout(ANSWER_TIMEOUT_SECONDS):
            while set(self.acknowledged) - set(self.answered_at):
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        # Its clients stop within CLIENT_STOP_SECONDS even with the broker away.
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def longest_silence_seconds(self, since: float) -> float:
        """The longest time without a reply, from `since` to the last reply."""
        times = sorted(t for t in self.answered_at.values() if t >= since)
        gaps = [b - a for a, b in zip([since, *times], times, strict=False)]
        return max(gaps, default=0.0)

    def first_answer_after(self, moment: float) -> float:
        return min(t for t in self.answered_at.values() if t >= moment)

    _reader_ready: bool = False

    async def _send(self) -> None:
        producer = acknowledged_producer(self.settings, "credits-fault-load")
        await producer.start()
        topic = self.settings.topic(Topic.COMMANDS)
        pause = 1.0 / self.rate_per_second
        number = 0
        try:
            while True:
                await self._sending.wait()
                account = self.accounts[number % len(self.accounts)]
                number += 1
                command_id = uuid.uuid4().hex
                body = {
                    "type": "consume",
                    "command_id": command_id,
                    "account_id": account,
                    "action": "lookup",
                    # Kept in the event: which command each applied consume was.
                    "metadata": {"command": command_id},
                }
                try:
                    async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                        await producer.send_and_wait(
                            topic,
                            value=json.dumps(body).encode(),
                            key=account.encode(),
                            headers=[("correlation_id", command_id.encode())],
                        )
                except (KafkaError, TimeoutError):
                    # Not acknowledged: the sender would retry it, and it may or may not apply.
                    self.unsent += 1
                    await asyncio.sleep(pause)
                    continue
                self.acknowledged[command_id] = account
                await asyncio.sleep(pause)
        finally:
            await _stop_within(producer.stop())

    async def _read_replies(self) -> None:
        topic = self.settings.topic(Topic.REPLIES)
        consumer = kafka_consumer(self.settings, client_id="credits-fault-load", group_id=None)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(self.settings.topic_partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)
            self._reader_ready = True
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                now = time.monotonic()
                for records in batch.values():
                    for record in records:
                        correlation = dict(record.headers).get("correlation_id") or b""
                        command_id = correlation.decode()
                        status = json.loads(record.value or b"{}").get("status", "?")
                        self.answers.setdefault(command_id, []).append(status)
                        self.answered_at.setdefault(command_id, now)
        finally:
            await _stop_within(consumer.stop())


async def _stop_within(stopping: Any) -> None:
    """A client's stop waits for the broker; a test that killed it must not wait for ever."""
    with suppress(Exception):
        await asyncio.wait_for(stopping, CLIENT_STOP_SECONDS)


def open_accounts(settings: Settings, accounts: list[str]) -> None:
    app = LedgerApplication(env={**event_store_env(settings), "AGGREGATE_CACHE_MAXSIZE": "0"})
    try:
        service = LedgerService(app, DEMO, SystemClock())
        replies = service.handle_many(
            [
                {"type": "open_account", "command_id": f"open-{a}", "account_id": a, "plan": "pro"}
                for a in accounts
            ]
        )
        assert {r.status for r in replies} == {"accepted"}, replies[0]
    finally:
        app.close()


@dataclass(frozen=True)
class Outcome:
    acknowledged: int
    unsent: int
    lost: int  # acknowledged, and never answered or never applied
    applied_twice: int
    refused: int


def check_exactly_once(settings: Settings, load: SteadyLoad) -> Outcome:
    reader = LedgerApplication(env={**event_store_env(settings), "AGGREGATE_CACHE_MAXSIZE": "0"})
    try:
        applied = Counter(
            event.metadata["command"]
            for account in load.accounts
            for event in reader.events.get(account)
            if isinstance(event, Account.Consumed)
        )
    finally:
        reader.close()
    answered = set(load.answered_at)
    lost = sum(1 for c in load.acknowledged if c not in answered or applied[c] == 0)
    refused = sum("rejected" in load.answers.get(c, []) for c in load.acknowledged)
    return Outcome(
        acknowledged=len(load.acknowledged),
        unsent=load.unsent,
        lost=lost,
        applied_twice=sum(1 for n in applied.values() if n > 1),
        refused=refused,
    )
