"""The benchmark's own database: named by a setting, dropped and made afresh before each phase."""

from __future__ import annotations

import asyncio
import os

import psycopg
from psycopg import sql

from infra.retry import Backoff, retry
from infra.settings import Settings

# Dropped and made again by every run: two checkouts benchmarking at once each need their own
# (README, settings).
BENCH_DATABASE = os.environ.get("CREDITS_BENCH_DATABASE", "credits_benchmark")


async def recreate_database(settings: Settings) -> None:
    """An empty benchmark database, with nothing of the benchmark before it left to write.

    pgbench's burst of writes, flushed by the kernel under the ledger's commits, added ~20 ms
    to its p99: each benchmark starts once earlier writes are on disk (`os.sync`).
    """
    name = sql.Identifier(BENCH_DATABASE)
    # An autovacuum worker on the last run's tables makes a forced drop fail for a few seconds:
    # the role may not end a superuser's process.
    await retry(
        lambda: asyncio.to_thread(
            _execute, settings, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name)
        ),
        doing=f"drop database {BENCH_DATABASE}",
        retry_on=(psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse),
        backoff=Backoff(first_seconds=0.2, max_seconds=2.0, max_attempts=30),
    )
    _execute(settings, sql.SQL("CREATE DATABASE {}").format(name))
    os.sync()


def _execute(settings: Settings, statement: sql.Composed) -> None:
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        conn.execute(statement)
