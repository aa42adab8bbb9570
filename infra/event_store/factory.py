"""The factory eventsourcing builds the ledger's recorder with: its connection pool configured,
its tables created one creator at a time."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import eventsourcing.postgres as es_postgres
from eventsourcing.persistence import AggregateRecorder, ApplicationRecorder, ProcessRecorder
from psycopg.sql import SQL

from infra.event_store.recorder import CreditsPostgresRecorder
from infra.event_store.snapshot_recorder import SnapshotRecorder
from infra.schema_lock import EVENT_STORE_LOCK_KEY

# A run count no statement reaches: psycopg never prepares by count (see the factory).
_ONLY_WHEN_ASKED = 2**31 - 1

POOL_RECONNECT_TIMEOUT_SECONDS = 5.0


class CreditsPostgresFactory(es_postgres.PostgresFactory):
    aggregate_recorder_class = SnapshotRecorder
    application_recorder_class = CreditsPostgresRecorder
    process_recorder_class = CreditsPostgresRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        # psycopg prepares a statement by itself on its 6th run (`prepare_threshold`). In
        # pipeline mode it records that statement as prepared when it is queued, unchecked; if
        # the pipeline aborts first (a receipt or version conflict earlier in the save), the
        # server never parsed it, and every later use on that connection fails with `prepared
        # statement "_pg3_N" does not exist`. So the store's connections prepare only what the
        # code asks for (`prepare=True`, which psycopg checks against the results).
        pool = self.datastore.pool
        configure = pool._configure

        def configure_connection(conn: Any) -> None:
            if configure is not None:
                configure(conn)
            conn.prepare_threshold = _ONLY_WHEN_ASKED

        pool._configure = configure_connection
        # psycopg_pool replaces a lost connection in the background, waiting 1 s, 2 s, 4 s, ...
        # between attempts for up to `reconnect_timeout` (5 minutes by default): after a
        # 90 s outage its next attempt could be a minute away, and callers wait for it. Given
        # up sooner, the pool shrinks instead, and the next caller that needs a connection
        # makes one at once: back within a retry pause of the server.
        self.datastore.pool.reconnect_timeout = POOL_RECONNECT_TIMEOUT_SECONDS

    # Components starting together on a fresh database (`credits run all`, or several
    # processes) would race on `CREATE TABLE IF NOT EXISTS`, which is not safe concurrently
    # (a duplicate row type fails one of them): tables are created one creator at a time.
    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        with self._creating_tables():
            return super().aggregate_recorder(purpose)

    def application_recorder(self) -> ApplicationRecorder:
        with self._creating_tables():
            return super().application_recorder()

    def process_recorder(self) -> ProcessRecorder:
        with self._creating_tables():
            return super().process_recorder()

    @contextlib.contextmanager
    def _creating_tables(self) -> Iterator[None]:
        if not self.env_create_table():
            yield
            return
        with self.datastore.get_connection() as conn:
            conn.execute(SQL("SELECT pg_advisory_lock(%s)"), (EVENT_STORE_LOCK_KEY,))
            try:
                yield
            finally:
                conn.execute(SQL("SELECT pg_advisory_unlock(%s)"), (EVENT_STORE_LOCK_KEY,))
