"""The scheduler sends what time makes due; two schedulers, or a late one, do no harm."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from domain.account import Account
from domain.catalog import load_catalog
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings, Topic
from services.ledger.consumer import LedgerConsumer
from services.ledger.service import LedgerService, SystemClock
from services.scheduler.scheduler import Scheduler
from tests.kafka_client import KafkaTestClient

pytestmark = pytest.mark.integration

DEMO = load_catalog(Path(__file__).resolve().parents[2] / "domain" / "catalogs" / "demo.toml")


async def test_an_expired_hold_returns_its_credits_once_with_two_schedulers_running(
    topics: Settings, kafka: KafkaTestClient
) -> None:
    apps = [LedgerApplication(env=event_store_env(topics)) for _ in range(3)]
    ledger = LedgerConsumer(topics, LedgerService(apps[0], DEMO, SystemClock()))
    schedulers = [Scheduler(topics, app, SystemClock()) for app in apps[1:]]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(ledger.run(stop))]
    tasks += [asyncio.create_task(scheduler.run(stop)) for scheduler in schedulers]
    account = f"sched-{uuid.uuid4().hex[:6]}"
    try:
        async with asyncio.timeout(30):
            while not ledger.state.ready:
                await asyncio.sleep(0.05)
        for body in [
            {"type": "open_account", "command_id": "open", "account_id": account, "plan": "pro"},
            {
                "type": "reserve",
                "command_id": "hold",
                "account_id": account,
                "hold_id": "h1",
                "action": "generate",
                "ttl_seconds": 2,
            },
        ]:
            await kafka.produce(topics.topic(Topic.COMMANDS), account, json.dumps(body).encode())
        # By command id: a reply can come twice (sent again after a rebalance), so the last
        # one read need not be the hold's.
        by_command: dict[str, dict] = {}
        for count in range(2, 10):
            replies = await kafka.read(topics.topic(Topic.REPLIES), count=count)
            by_command = {r["command_id"]: r for r in (json.loads(x.value or b"") for x in replies)}
            if "hold" in by_command:
                break
        held = by_command["hold"]["balances"]["credits"]
        assert held["held"] > 0

        async with asyncio.timeout(30):
            while not any(isinstance(e, Account.HoldExpired) for e in apps[0].events.get(account)):
                await asyncio.sleep(0.2)
        await asyncio.sleep(2 * 1.0)  # both schedulers tick again: nothing more may happen
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=30)

    reader = LedgerApplication(env={**event_store_env(topics), "AGGREGATE_CACHE_MAXSIZE": "0"})
    events = list(reader.events.get(account))
    expired = [e for e in events if isinstance(e, Account.HoldExpired)]
    assert len(expired) == 1
    stored: Account = reader.repository.get(account)
    balances = stored.balances(DEMO)["credits"]
    assert balances["held"] == 0
    assert balances["available"] == held["available"] + held["held"]
    assert sum(s.state.fired for s in schedulers) >= 1
    for app in [*apps, reader]:
        app.close()
