"""A Kafka ledger consumer running inside a test, on the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from domain.catalog import Catalog, load_catalog
from infra.event_store.env import event_store_env
from infra.kafka_topics import create_topics
from infra.ledger_application import LedgerApplication
from infra.readiness import READINESS
from infra.settings import Settings
from services.ledger.consumer import LedgerConsumer
from services.ledger.service import LedgerService, SystemClock

DEMO = load_catalog(Path(__file__).resolve().parents[1] / "domain" / "catalogs" / "demo.toml")


async def own_topics(settings: Settings) -> Settings:
    """Settings with topics (and so a consumer group) of their own, created now."""
    own = settings.model_copy(
        update={"topic_prefix": f"{settings.topic_prefix}{uuid.uuid4().hex[:6]}."}
    )
    await create_topics(own)
    return own


class RunningLedger:
    def __init__(
        self,
        settings: Settings,
        consumer_class: type[LedgerConsumer] = LedgerConsumer,
        *,
        as_in_production: bool = False,
        catalog: Catalog = DEMO,
    ) -> None:
        """`as_in_production`: the cache is trusted as `credits run ledger` trusts it (no
        fast-forward, so an account in it is not read again); by default each account is
        read again, which lets tests write to the ledger's database from elsewhere."""
        assert settings.topic_prefix, "tests run on their own topics"
        fastforward = "n" if as_in_production else "y"
        self.app = LedgerApplication(
            env={**event_store_env(settings), "AGGREGATE_CACHE_FASTFORWARD": fastforward}
        )
        self.service = LedgerService(self.app, catalog, SystemClock())
        self.consumer = consumer_class(settings, self.service)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.consumer.run(self.stop))
        async with asyncio.timeout(30):
            # Consuming (ready or not), or past it already: a test ledger may crash at once.
            while self.consumer.state.phase in {"not started", "starting"}:
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=30)
        self.app.close()
        # A stopped ledger reports itself not ready: that must not fail later tests' /readyz.
        READINESS.unregister("ledger")
