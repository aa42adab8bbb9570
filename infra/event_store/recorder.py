"""The ledger's recorder: eventsourcing's process recorder plus command receipts, Kafka
positions and stored replies, all written in the transaction of one save."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import eventsourcing.postgres as es_postgres
import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.utils import retry as es_retry
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier, Literal

from infra.event_store.batch_function import (
    STALE_READ,
    create_save_batch_function,
    save_batch_arguments,
    save_batch_statement,
)
from infra.event_store.batch_writes import BatchWrites, writes_of
from infra.event_store.follower_tables import FollowerTables
from infra.event_store.kafka_tables import (
    POSITION_CONFLICT,
    KafkaPositionConflict,
    KafkaTables,
)
from infra.receipts import Receipt, ReceiptConflict


class StaleRead(IntegrityError):
    """An account a save decided on without changing it was written since it was read.

    A refusal writes no event, so no version conflict would catch a decision taken on a cached
    account that another writer has moved on: the save checks those accounts' versions.
    """


class CreditsPostgresRecorder(KafkaTables, FollowerTables, es_postgres.PostgresProcessRecorder):
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
                "traceparent text, "
                "CONSTRAINT {pkey} PRIMARY KEY (account_id, command_id))"
            ).format(table=table, pkey=Identifier(self.receipts_primary_key))
        )
        # Receipts stored before the ledger traced commands get the column (null: no trace).
        # Checked first: ALTER TABLE would lock the table even when the column exists.
        self.sql_create_statements.append(
            SQL(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM information_schema.columns "
                "WHERE table_schema = {schema} AND table_name = {name} "
                "AND column_name = 'traceparent') THEN "
                "ALTER TABLE {table} ADD COLUMN traceparent text; END IF; END $$"
            ).format(
                schema=Literal(self.datastore.schema or "public"),
                name=Literal(self.receipts_table_name),
                table=table,
            )
        )
        self.select_traceparents_statement = SQL(
            "SELECT r.account_id, r.command_id, r.traceparent FROM {table} r "
            "JOIN unnest(%s::text[], %s::text[]) AS k(account_id, command_id) "
            "USING (account_id, command_id) WHERE r.traceparent IS NOT NULL"
        ).format(table=table)
        # One round trip for a whole batch: the keys travel as two parallel arrays.
        self.select_receipts_statement = SQL(
            "SELECT r.account_id, r.command_id, r.payload_sha256, r.reply_json FROM {table} r "
            "JOIN unnest(%s::text[], %s::text[]) AS k(account_id, command_id) "
            "USING (account_id, command_id)"
        ).format(table=table)
        prefix = events_table_name.removesuffix("_events")
        self._create_kafka_tables(prefix)
        self._create_follower_tables(prefix)
        save_batch = prefix + "_save_batch"
        self.sql_create_statements.append(
            create_save_batch_function(
                self.datastore,
                function=save_batch,
                events_table=self.events_table_name,
                receipts_table=self.receipts_table_name,
                replies_table=prefix + "_kafka_replies",
                advance_position_function=prefix + "_advance_kafka_position",
                channel=self.channel_name,
            )
        )
        self.save_batch_statement = save_batch_statement(self.datastore, save_batch)
        # Rendered once, with the first connection (psycopg would compose it on every call).
        self._save_batch_query: bytes | None = None
        self._streams_statements: dict[str | None, bytes] = {}

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The events and what the save writes beside them (`writes`), in one statement.

        `single_attempt=True` asks for no retry inside. Otherwise a connection error is retried
        as the library retries it: 10 times, 0.2 s apart, each wait for a pooled connection up
        to the connect timeout (~50 s with the database down). The Kafka consumer applies
        batches on its event loop's thread and has bounded retries of its own, between which
        its loop answers the broker; it asks for one attempt (at most one connect timeout) so
        that its loop is never blocked for longer than that.
        """
        assert kwargs.get("tracking") is None, "the ledger's saves carry no tracking record"
        writes = writes_of(kwargs)
        if writes.single_attempt:
            return self._save_batch(stored_events, writes)
        return self._save_batch_retried(stored_events, writes)

    @es_retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _save_batch_retried(
        self, stored_events: Sequence[StoredEvent], writes: BatchWrites
    ) -> list[int] | None:
        return self._save_batch(stored_events, writes)

    def _save_batch(
        self, stored_events: Sequence[StoredEvent], writes: BatchWrites
    ) -> list[int] | None:
        arguments = save_batch_arguments(writes, stored_events)
        try:
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                if self._save_batch_query is None:
                    self._save_batch_query = self.save_batch_statement.as_bytes(conn)
                # Prepared: parsed and planned once per connection, not on every batch.
                curs.execute(self._save_batch_query, arguments, prepare=True)
                notification_ids = [row["notification_id"] for row in curs.fetchall()]
        except IntegrityError as error:
            message = str(error)
            if POSITION_CONFLICT in message:
                raise KafkaPositionConflict(message) from error
            if self.receipts_primary_key in message:
                raise ReceiptConflict(message) from error
            if STALE_READ in message:
                raise StaleRead(message) from error
            raise
        if not stored_events:
            return None
        assert len(notification_ids) == len(stored_events), "one notification id an event"
        return notification_ids

    def select_notifications_once(self, start: int, limit: int) -> Sequence[Notification]:
        """`select_notifications` in one attempt, for followers that retry by themselves.

        The library's own retry (10 attempts, each waiting up to the connect timeout for a
        pooled connection) holds the calling thread for ~50 s while the database is down:
        the follower could neither say it is not ready nor stop meanwhile.
        """
        select: Any = super().select_notifications
        return cast(Sequence[Notification], select.__wrapped__(self, start, limit))

    def server_answers(self) -> bool:
        """Whether the server accepts a connection now: a fresh one, not one of the pool's.

        After an outage the pool retries its lost connections with a backoff that doubles up to
        minutes (psycopg_pool), so it may take that long to hand out a connection again. A
        caller that asks the server itself, and calls `drop_broken_connections` once it
        answers, has fresh connections at once.
        """
        pool_kwargs = self.datastore.pool.kwargs
        assert isinstance(pool_kwargs, dict), "eventsourcing passes connection kwargs as a dict"
        kwargs = {k: v for k, v in pool_kwargs.items() if k != "row_factory"}
        timeout_seconds = max(1, int(self.datastore.pool.timeout))
        try:
            with psycopg.connect(**kwargs, connect_timeout=timeout_seconds):
                return True
        except psycopg.Error:
            return False

    def drop_broken_connections(self) -> None:
        """After a database error: the pool's idle connections are tested, broken ones replaced.

        Connections are not pinged on checkout (POSTGRES_PRE_PING=n), so a restarted server
        leaves the pool full of dead ones: a caller making single attempts would otherwise meet
        them one attempt at a time (8 of them, its whole retry budget, in the test we ran).
        """
        self.datastore.pool.check()

    def select_traceparents(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The traceparent stored with each of these commands' receipts, where there is one."""
        if not keys:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.select_traceparents_statement, ([k[0] for k in keys], [k[1] for k in keys])
            )
            return {(r["account_id"], r["command_id"]): r["traceparent"] for r in curs.fetchall()}

    def select_receipts(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Receipt]:
        if not keys:
            return {}
        accounts = [account_id for account_id, _ in keys]
        commands = [command_id for _, command_id in keys]
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_receipts_statement, (accounts, commands))
            rows = curs.fetchall()
        return {
            (row["account_id"], row["command_id"]): Receipt(
                account_id=row["account_id"],
                command_id=row["command_id"],
                payload_sha256=row["payload_sha256"],
                reply_json=row["reply_json"],
            )
            for row in rows
        }

    def select_streams(
        self, originator_ids: Sequence[str], snapshots_table_name: str | None
    ) -> dict[str, list[StoredEvent]]:
        """For each id: its latest snapshot (if any) then the events after it, in order.

        One statement for a whole batch of accounts (a round trip, not two queries per account:
        what a freshly started ledger spends most of its time on otherwise).
        """
        if not originator_ids:
            return {}
        streams: dict[str, list[StoredEvent]] = {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            statement = self._streams_statements.get(snapshots_table_name)
            if statement is None:
                # Composed once per snapshots table: psycopg would compose it on every load.
                statement = self._streams_statement(snapshots_table_name).as_bytes(conn)
                self._streams_statements[snapshots_table_name] = statement
            curs.execute(statement, {"ids": list(originator_ids)})
            for row in curs.fetchall():
                streams.setdefault(row["originator_id"], []).append(_stored_event(row))
        return streams

    def _streams_statement(self, snapshots_table_name: str | None) -> Composed:
        schema = Identifier(self.datastore.schema)
        events = Identifier(self.datastore.schema, self.events_table_name)
        if snapshots_table_name is None:
            return SQL(
                "SELECT originator_id, originator_version, topic, state FROM {events} "
                "WHERE originator_id = ANY(%(ids)s) ORDER BY originator_id, originator_version"
            ).format(events=events)
        # Each stream's snapshot row comes first (ordered by `snapshot`), then its events.
        return SQL(
            "WITH latest AS ("
            "SELECT DISTINCT ON (originator_id) originator_id, originator_version, topic, state "
            "FROM {schema}.{snapshots} WHERE originator_id = ANY(%(ids)s) "
            "ORDER BY originator_id, originator_version DESC) "
            "SELECT originator_id, originator_version, topic, state, 0 AS snapshot FROM latest "
            "UNION ALL "
            "SELECT e.originator_id, e.originator_version, e.topic, e.state, 1 FROM {events} e "
            "LEFT JOIN latest l USING (originator_id) "
            "WHERE e.originator_id = ANY(%(ids)s) "
            "AND e.originator_version > coalesce(l.originator_version, 0) "
            "ORDER BY originator_id, snapshot, originator_version"
        ).format(schema=schema, snapshots=Identifier(snapshots_table_name), events=events)


def _stored_event(row: DictRow) -> StoredEvent:
    return StoredEvent(
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )
