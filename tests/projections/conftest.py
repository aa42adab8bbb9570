"""Fixtures for the read-side integration tests: the ledger on this session's PostgreSQL
database, driven with a settable clock, and the read side (pool, event log, projections)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.account import Account
from domain.catalog import Catalog, load_catalog
from domain.replies import Reply
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings
from projections.read_side import ReadSide, open_read_side
from services.ledger.service import LedgerService
from tests.projections.raw_side import Side, own_side


class Clock:
    def __init__(self) -> None:
        self.current = datetime.now(UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


class PgLedger:
    """The real ledger service on PostgreSQL; account ids are made unique per test."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.catalog = catalog
        self.clock = Clock()
        self.app = LedgerApplication(env=event_store_env(settings))
        self.service = LedgerService(self.app, catalog, self.clock)
        self.sent = 0

    @staticmethod
    def new_account_id(prefix: str = "acct") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    def command(self, type: str, account_id: str, **fields: Any) -> dict[str, Any]:
        self.sent += 1
        return {"type": type, "command_id": f"c{self.sent}", "account_id": account_id, **fields}

    def send(self, type: str, account_id: str, **fields: Any) -> Reply:
        return self.service.handle(self.command(type, account_id, **fields))

    def ok(self, type: str, account_id: str, **fields: Any) -> Reply:
        reply = self.send(type, account_id, **fields)
        assert reply.status == "accepted", reply.error
        return reply

    def account(self, account_id: str) -> Account:
        account: Account = self.app.repository.get(account_id)
        return account

    def events(self, account_id: str) -> list[Any]:
        return list(self.app.events.get(account_id))


@pytest.fixture(scope="session")
def demo_catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.catalog_path)


@pytest.fixture(scope="session")
def pg_ledger(settings: Settings, pg_database: str, demo_catalog: Catalog) -> Iterator[PgLedger]:
    ledger = PgLedger(settings, demo_catalog)
    yield ledger
    ledger.app.close()


@pytest.fixture(scope="session")
async def read_side(
    settings: Settings, pg_database: str, pg_ledger: PgLedger
) -> AsyncIterator[ReadSide]:
    async with open_read_side(settings) as side:
        yield side


@pytest.fixture
async def side(base_settings: Settings, settings: Settings) -> AsyncIterator[Side]:
    """A read side over raw stored events, on a database of the test's own."""
    async with own_side(base_settings, settings) as own:
        yield own
