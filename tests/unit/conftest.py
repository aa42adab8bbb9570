"""Unit-test fixtures: the ledger service on the in-memory store, with a clock tests set."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.account import Account
from domain.catalog import Catalog, load_catalog, parse_catalog
from domain.replies import Reply
from infra.ledger_application import LedgerApplication
from services.ledger.service import LedgerService

CATALOGS = Path(__file__).resolve().parents[2] / "domain" / "catalogs"
# A Wednesday, the 31st of a month before a leap February: month ends get exercised.
START = datetime(2024, 1, 31, 10, 0, tzinfo=UTC)
MEMORY = {"PERSISTENCE_MODULE": "infra.memory_store"}


class SettableClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current

    def set(self, when: datetime) -> None:
        assert when >= self.current, "tests move time forward only"
        self.current = when


class Ledger:
    """A ledger service on the in-memory store, driven the way a producer would drive it."""

    def __init__(self, catalog: Catalog, start: datetime, env: dict[str, str]) -> None:
        self.catalog = catalog
        self.clock = SettableClock(start)
        self.app = LedgerApplication(env={**MEMORY, **env})
        self.service = LedgerService(self.app, catalog, self.clock)
        self._sent = 0
        self._read: dict[str, int] = {}

    def send(
        self, type: str, account: str = "acct", command_id: str | None = None, **fields: Any
    ) -> Reply:
        self._sent += 1
        command = {
            "type": type,
            "command_id": command_id or f"cmd-{self._sent}",
            "account_id": account,
            **fields,
        }
        return self.service.handle(command)

    def ok(self, type: str, account: str = "acct", **fields: Any) -> Reply:
        reply = self.send(type, account, **fields)
        assert reply.status == "accepted", reply.error
        return reply

    def rejected(self, type: str, code: str, account: str = "acct", **fields: Any) -> Reply:
        before = self.version(account)
        reply = self.send(type, account, **fields)
        assert reply.status == "rejected", reply
        assert reply.error is not None and reply.error.code == code, reply.error
        assert self.version(account) == before, "a rejected command must write nothing"
        return reply

    def account(self, account: str = "acct") -> Account:
        loaded: Account = self.app.repository.get(account)
        return loaded

    def version(self, account: str = "acct") -> int | None:
        events = list(self.app.events.get(account, desc=True, limit=1))
        return events[0].originator_version if events else None

    def events(self, account: str = "acct") -> list[Any]:
        return list(self.app.events.get(account))

    def new_events(self, account: str = "acct") -> list[Any]:
        """The events stored since the last call: what the last commands decided."""
        seen = self._read.get(account, 0)
        events = list(self.app.events.get(account, gt=seen))
        if events:
            self._read[account] = events[-1].originator_version
        return events

    def available(self, credit_type: str, account: str = "acct") -> int:
        return self.account(account).available(credit_type)

    def balance(self, credit_type: str, account: str = "acct") -> dict[str, Any]:
        return self.account(account).balances(self.catalog)[credit_type]

    @staticmethod
    def names(events: list[Any]) -> list[str]:
        return [type(e).__name__ for e in events]

    @staticmethod
    def only(events: list[Any], cls: type) -> list[Any]:
        return [e for e in events if type(e) is cls]


@pytest.fixture
def make_ledger() -> Callable[..., Ledger]:
    def make(catalog: str, start: datetime = START, **env: str) -> Ledger:
        """A catalog file of domain/catalogs/ (`*.toml`), or the text of one."""
        if catalog.endswith(".toml"):
            return Ledger(load_catalog(CATALOGS / catalog), start, env)
        return Ledger(parse_catalog(catalog), start, env)

    return make
