"""Components started together on a fresh database create the event store's tables once."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg

from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings
from tests.databases import fresh_database

STARTING_TOGETHER = 6


def test_applications_starting_together_on_a_fresh_database_all_start(
    base_settings: Settings,
) -> None:
    name = f"credits_tables_{uuid.uuid4().hex[:10]}"
    with fresh_database(base_settings, name):
        barrier = threading.Barrier(STARTING_TOGETHER)

        def start() -> LedgerApplication:
            barrier.wait(timeout=30)
            return LedgerApplication(env=event_store_env(base_settings, database=name))

        with ThreadPoolExecutor(STARTING_TOGETHER) as pool:
            futures = [pool.submit(start) for _ in range(STARTING_TOGETHER)]
            apps = [future.result(timeout=60) for future in futures]
        try:
            dsn = base_settings.model_copy(update={"pg_database": name}).pg_dsn()
            with psycopg.connect(dsn) as conn:
                tables = {
                    row[0]
                    for row in conn.execute(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    )
                }
            assert {"ledger_events", "ledger_receipts", "ledger_snapshots"} <= tables, tables
        finally:
            for app in apps:
                app.close()
