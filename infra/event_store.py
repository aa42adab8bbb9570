"""The event store on PostgreSQL: eventsourcing's recorder plus command receipts.

Receipts (`infra/receipts.py`) are inserted in the same transaction as the events and the
tracking position, so a command's effect, its receipt and (for Kafka) the offset it came from
commit together or not at all. eventsourcing's database-functions mode is never used: in 9.5 it
takes no table lock and drops tracking rows (DESIGN §8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import eventsourcing.postgres as es_postgres
from eventsourcing.persistence import IntegrityError, StoredEvent
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from infra.receipts import Receipt, ReceiptConflict
from infra.settings import Settings

# eventsourcing resolves this topic to the factory below (one class, named explicitly).
PERSISTENCE_TOPIC = "infra.event_store:CreditsPostgresFactory"


class CreditsPostgresRecorder(es_postgres.PostgresProcessRecorder):
    """Application recorder with tracking (Kafka positions) and command receipts."""

    def __init__(
        self,
        datastore: es_postgres.PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
        )
        self.receipts_table_name = events_table_name.removesuffix("_events") + "_receipts"
        self.check_identifier_length(self.receipts_table_name)
        self.receipts_primary_key = self.receipts_table_name + "_pkey"
        table = Identifier(self.datastore.schema, self.receipts_table_name)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {table} ("
                "account_id text NOT NULL, "
                "command_id text NOT NULL, "
                "payload_sha256 text NOT NULL, "
                "reply_json text NOT NULL, "
                "recorded_at timestamptz NOT NULL DEFAULT now(), "
                "CONSTRAINT {pkey} PRIMARY KEY (account_id, command_id))"
            ).format(table=table, pkey=Identifier(self.receipts_primary_key))
        )
        self.insert_receipt_statement = SQL(
            "INSERT INTO {table} (account_id, command_id, payload_sha256, reply_json) "
            "VALUES (%s, %s, %s, %s)"
        ).format(table=table)
        self.select_receipt_statement = SQL(
            "SELECT account_id, command_id, payload_sha256, reply_json FROM {table} "
            "WHERE account_id = %s AND command_id = %s"
        ).format(table=table)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        try:
            return super().insert_events(stored_events, **kwargs)
        except IntegrityError as error:
            if self.receipts_primary_key in str(error):
                raise ReceiptConflict(str(error)) from error
            raise

    def _insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> None:
        receipts: Sequence[Receipt] = kwargs.get("receipts") or ()
        if receipts:
            curs.executemany(
                self.insert_receipt_statement,
                [(r.account_id, r.command_id, r.payload_sha256, r.reply_json) for r in receipts],
            )
        super()._insert_events(curs, stored_events, **kwargs)

    def select_receipt(self, account_id: str, command_id: str) -> Receipt | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_receipt_statement, (account_id, command_id), prepare=True)
            row = curs.fetchone()
        if row is None:
            return None
        return Receipt(
            account_id=row["account_id"],
            command_id=row["command_id"],
            payload_sha256=row["payload_sha256"],
            reply_json=row["reply_json"],
        )


class CreditsPostgresFactory(es_postgres.PostgresFactory):
    application_recorder_class = CreditsPostgresRecorder
    process_recorder_class = CreditsPostgresRecorder


def event_store_env(settings: Settings, database: str | None = None) -> dict[str, str]:
    """The eventsourcing environment for the ledger application on PostgreSQL.

    Every option is passed explicitly rather than trusting the library's defaults.
    """
    return {
        "PERSISTENCE_MODULE": PERSISTENCE_TOPIC,
        "POSTGRES_DBNAME": database or settings.pg_database,
        "POSTGRES_HOST": settings.pg_host,
        "POSTGRES_PORT": str(settings.pg_port),
        "POSTGRES_USER": settings.pg_user,
        "POSTGRES_PASSWORD": settings.pg_password,
        "POSTGRES_CONNECT_TIMEOUT": str(int(settings.pg_connect_timeout_seconds)),
        "POSTGRES_POOL_SIZE": str(settings.pg_pool_size),
        # Overflow connections absorb a burst of threads (the API's synchronous commands) without
        # blocking; beyond it callers wait, at most POSTGRES_MAX_WAITING of them.
        "POSTGRES_MAX_OVERFLOW": str(settings.pg_pool_size),
        "POSTGRES_MAX_WAITING": "64",
        # Inserts take a table lock (that is how the notification log stays gap-free); a writer
        # that cannot get it in 5 s fails and is retried rather than hanging.
        "POSTGRES_LOCK_TIMEOUT": "5",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "10",
        "POSTGRES_PRE_PING": "y",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        "SINGLE_ROW_TRACKING": "y",
        "ORIGINATOR_ID_TYPE": "text",
        "CREATE_TABLE": "y",
    }
