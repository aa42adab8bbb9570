"""The tests' one ledger driver: the real `LedgerService`, driven the way a producer drives it
(commands in, replies out), with what it stored at hand to look at.

On the in-memory store, unless given an application of its own (`ledger_on_postgres`: the
projections' tests run it on PostgreSQL). Time is a `SettableClock` (tests/kit/clock.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventsourcing.application import project_aggregate

from domain.account import Account
from domain.catalog import Catalog, load_catalog, parse_catalog
from domain.replies import Reply
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings
from services.ledger.service import LedgerService
from tests.kit.clock import SettableClock

CATALOGS = Path(__file__).resolve().parents[2] / "domain" / "catalogs"
MEMORY = {"PERSISTENCE_MODULE": "infra.memory_store"}


def catalog_of(name_or_text: str) -> Catalog:
    """A catalog file of domain/catalogs/ (`*.toml`), or the text of one."""
    if name_or_text.endswith(".toml"):
        return load_catalog(CATALOGS / name_or_text)
    return parse_catalog(name_or_text)


def ledger_on_postgres(settings: Settings, catalog: Catalog) -> Ledger:
    """The driver on the PostgreSQL database of `settings`, its clock set to the present: the
    database is shared, so accounts take ids of their own (`Ledger.new_account_id`)."""
    app = LedgerApplication(env=event_store_env(settings))
    return Ledger(catalog, SettableClock(datetime.now(UTC)), app=app)


class Ledger:
    def __init__(
        self,
        catalog: Catalog | str,
        clock: SettableClock | None = None,
        *,
        app: LedgerApplication | None = None,
        **env: str,
    ) -> None:
        """`app`: an application of the test's own (its store prepared beforehand); otherwise
        one on the in-memory store, `env` over it."""
        assert app is None or not env, "env configures the in-memory application only"
        self.catalog = catalog_of(catalog) if isinstance(catalog, str) else catalog
        self.clock = clock or SettableClock()
        self.app = app or LedgerApplication(env={**MEMORY, **env})
        self.service = LedgerService(self.app, self.catalog, self.clock)
        self._sent = 0
        self._read: dict[str, int] = {}

    def close(self) -> None:
        self.app.close()

    @staticmethod
    def new_account_id(prefix: str = "acct") -> str:
        """An account id no other test uses: for a store that tests share."""
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    # ------------------------------------------------------------ commands in

    def command(
        self, type: str, account: str = "acct", command_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A command as a producer sends it; ids `cmd-1`, `cmd-2`, ... unless given."""
        self._sent += 1
        return {
            "type": type,
            "command_id": command_id or f"cmd-{self._sent}",
            "account_id": account,
            **fields,
        }

    def send(
        self, type: str, account: str = "acct", command_id: str | None = None, **fields: Any
    ) -> Reply:
        return self.service.handle(self.command(type, account, command_id, **fields))

    def ok(
        self, type: str, account: str = "acct", command_id: str | None = None, **fields: Any
    ) -> Reply:
        reply = self.send(type, account, command_id, **fields)
        assert reply.status == "accepted", reply.error
        return reply

    def rejected(self, type: str, code: str, account: str = "acct", **fields: Any) -> Reply:
        before = self.version(account)
        reply = self.send(type, account, **fields)
        assert reply.status == "rejected", reply
        assert reply.error is not None and reply.error.code == code, reply.error
        assert self.version(account) == before, "a rejected command must write nothing"
        return reply

    def apply(self, commands: Sequence[dict[str, Any]]) -> list[Reply]:
        """Commands made elsewhere (by the payment side, say), one after the other."""
        return [self.service.handle(dict(command)) for command in commands]

    # ------------------------------------------------------------ what it stored

    def account(self, account: str = "acct") -> Account:
        loaded: Account = self.app.repository.get(account)
        return loaded

    def fold(self, account: str = "acct") -> Account:
        """The account folded from all its stored events, no snapshot or cache involved."""
        folded = project_aggregate(None, self.app.events.get(account))
        assert isinstance(folded, Account)
        return folded

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
