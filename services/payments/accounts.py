"""The account's plan for checkout, read through the ledger application (the authority).

Loading an account replays its stream from the latest snapshot (synchronous eventsourcing, so
in a thread). A read model would do as well; this keeps checkout correct without one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from eventsourcing.application import AggregateNotFoundError

from domain.account import Account
from infra.event_store import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings


def ledger_plan_of(settings: Settings) -> Callable[[str], Awaitable[str | None]]:
    app: LedgerApplication | None = None

    def load(account_id: str) -> str | None:
        nonlocal app
        if app is None:
            app = LedgerApplication(env=event_store_env(settings))
        try:
            account: Account = app.repository.get(account_id)
        except AggregateNotFoundError:
            return None
        return str(account.plan)

    async def plan_of(account_id: str) -> str | None:
        return await asyncio.to_thread(load, account_id)

    return plan_of
