"""Throwaway PostgreSQL databases for tests, created and dropped on the local server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from infra.settings import Settings


@contextmanager
def fresh_database(admin: Settings, name: str) -> Iterator[None]:
    """Creates database `name` through `admin`'s connection; drops it (sessions and all) after."""
    identifier = sql.Identifier(name)
    with psycopg.connect(admin.pg_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    try:
        yield
    finally:
        with psycopg.connect(admin.pg_dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
