"""Throwaway PostgreSQL databases for tests, created and dropped on the local server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
from psycopg import sql

from infra.retry import Backoff, retry
from infra.settings import Settings

# An autovacuum worker busy with a new database's tables makes a forced drop fail: the tests'
# role may not end a superuser's process (InsufficientPrivilege). It is done within seconds.
DROP_BACKOFF = Backoff(first_seconds=0.2, max_seconds=2.0, max_attempts=30)


@contextmanager
def fresh_database(admin: Settings, name: str) -> Iterator[None]:
    """Creates database `name` through `admin`'s connection; drops it (sessions and all) after."""
    _execute(admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield
    finally:
        drop_database(admin, name)


def drop_database(admin: Settings, name: str) -> None:
    """Drops `name`, ending its sessions; callable with or without a running event loop."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))

    async def retried() -> None:
        await retry(
            lambda: asyncio.to_thread(_execute, admin, drop),
            doing=f"drop database {name}",
            retry_on=(psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse),
            backoff=DROP_BACKOFF,
        )

    # A loop of its own, on a thread of its own: the caller may be inside a running loop.
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, retried()).result()


def _execute(admin: Settings, statement: sql.Composed) -> None:
    with psycopg.connect(admin.pg_dsn(), autocommit=True) as conn:
        conn.execute(statement)
