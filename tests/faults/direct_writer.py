"""Commands applied straight to the event store, not through Kafka, at a slow steady pace.

It stands for any writer besides the Kafka ledger, so that events are stored while the broker
is away and the relay and the scheduler have work to do through a Kafka outage. Its accounts
are its own (one writer per account). Failures while PostgreSQL is away are counted, not
raised: the checks read what was stored.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from domain.catalog import load_catalog
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings
from services.ledger.service import LedgerService, SystemClock

ACCOUNTS = 5
PAUSE_SECONDS = 0.1
HOLD_TTL_SECONDS = 3


class DirectWriter:
    def __init__(self, settings: Settings, prefix: str) -> None:
        self.settings = settings
        self.accounts = [f"{prefix}-direct-{n}" for n in range(ACCOUNTS)]
        self.applied = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="direct-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        # A write in the library's own retry (the database away) may take ~50 s to give up.
        self._thread.join(timeout=90)
        assert not self._thread.is_alive(), "the direct writer did not stop"

    def _run(self) -> None:
        app = LedgerApplication(env=event_store_env(self.settings))
        service = LedgerService(app, load_catalog(self.settings.catalog_path), SystemClock())
        try:
            commands = [
                {"type": "open_account", "account_id": a, "plan": "pro"} for a in self.accounts
            ]
            n = 0
            while not self._stop.is_set():
                command = commands.pop(0) if commands else self._next(n)
                n += 1
                command["command_id"] = f"direct-{n}"
                try:
                    reply = service.handle(command)
                except Exception:
                    self.failed += 1
                    commands.insert(0, command)  # the same again, under a new command id
                    time.sleep(1)
                    continue
                self.applied += reply.status == "accepted"
                time.sleep(PAUSE_SECONDS)
        finally:
            app.close()

    def _next(self, n: int) -> dict[str, Any]:
        account = self.accounts[n % len(self.accounts)]
        if n % 4 == 0:
            return {
                "type": "reserve",
                "account_id": account,
                "hold_id": f"direct-h{n}",
                "action": "generate",
                "ttl_seconds": HOLD_TTL_SECONDS,
            }
        return {"type": "consume", "account_id": account, "action": "lookup"}
