"""The scheduler: sends the time-driven commands that are due (DESIGN §5).

It follows the notification log and keeps, per account, the next moment time alone changes it
(`Account.next_due_at`: a hold or lot expiring, a period ending, a scheduled plan change). When
that moment passes it sends an `expire` command to `credits.commands`, keyed by account. The
ledger's catch-up is idempotent — renewals are per period, expiries per hold and lot — so a
scheduler running twice, late, or firing again after a lost command does no harm; and a command
that reaches an account first catches it up anyway. Renewals need no `renew` of their own here:
`expire` renews every period that has ended (Stripe's `invoice.paid` still sends `renew`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from eventsourcing.application import AggregateNotFoundError

from domain.account import Account
from domain.clock import Clock
from infra.event_store import CreditsPostgresRecorder
from infra.kafka_clients import acknowledged_producer
from infra.ledger_application import LedgerApplication
from infra.settings import Settings, Topic

log = structlog.get_logger("credits.scheduler")

FOLLOWER_NAME = "scheduler:due"
MAX_FOLLOW_EVENTS = 1000
MAX_FIRE_ACCOUNTS = 500
TICK_SECONDS = 1.0
# A fired command that changed nothing (lost, or rejected) is sent again after this.
REFIRE_AFTER_SECONDS = 60.0


@dataclass
class SchedulerState:
    position: int = 0
    fired: int = 0


class Scheduler:
    def __init__(self, settings: Settings, app: LedgerApplication, clock: Clock) -> None:
        recorder = app.recorder
        assert isinstance(recorder, CreditsPostgresRecorder), "the scheduler reads PostgreSQL"
        self.app = app
        self.recorder = recorder
        self.clock = clock
        self.topic = settings.topic(Topic.COMMANDS)
        self.state = SchedulerState()
        self._producer = acknowledged_producer(settings, "credits-scheduler")

    async def run(self, stop: asyncio.Event) -> None:
        await self._producer.start()
        try:
            self.state.position = await asyncio.to_thread(
                self.recorder.select_follower_position, FOLLOWER_NAME
            )
            log.info("scheduling", from_position=self.state.position)
            while not stop.is_set():
                followed = await asyncio.to_thread(self.follow)
                fired = await self.fire()
                if followed < MAX_FOLLOW_EVENTS and fired < MAX_FIRE_ACCOUNTS:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=TICK_SECONDS)
        finally:
            await self._producer.stop()

    def follow(self) -> int:
        """Reads new events; stores the next due time of each account they touched."""
        batch = self.recorder.select_notifications(self.state.position + 1, MAX_FOLLOW_EVENTS)
        if not batch:
            return 0
        due_at: dict[str, datetime | None] = {}
        for account_id in {str(n.originator_id) for n in batch}:
            try:
                account: Account = self.app.repository.get(account_id)
            except AggregateNotFoundError:
                continue
            due_at[account_id] = account.next_due_at()
        self.recorder.save_due_times(FOLLOWER_NAME, batch[-1].id, due_at)
        self.state.position = batch[-1].id
        return len(batch)

    async def fire(self) -> int:
        now = self.clock.now()
        due = await asyncio.to_thread(
            self.recorder.select_due,
            now,
            now - timedelta(seconds=REFIRE_AFTER_SECONDS),
            MAX_FIRE_ACCOUNTS,
        )
        if not due:
            return 0
        futures = []
        for account_id, due_at in due:
            command = {
                "type": "expire",
                # Receipts are per account, so the account id need not be in it. Distinct per
                # firing: a retry after a refused expire must be decided afresh.
                "command_id": f"scheduler:expire:{due_at.isoformat()}:{int(now.timestamp())}",
                "account_id": account_id,
            }
            futures.append(
                await self._producer.send(
                    self.topic, key=account_id.encode(), value=json.dumps(command).encode()
                )
            )
        await asyncio.gather(*futures)
        await asyncio.to_thread(self.recorder.mark_fired, due, now)
        self.state.fired += len(due)
        return len(due)
