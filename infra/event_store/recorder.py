"""The ledger's recorder: eventsourcing's process recorder plus command receipts, Kafka
positions and stored replies, all written in the transaction of one save."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, cast

import eventsourcing.postgres as es_postgres
import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal

from infra.event_store.array_inserts import insert_events, insert_events_statement
from infra.event_store.batch_writes import writes_of
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


# psycopg's message when a statement of a pipeline fails after an earlier one did.
_PIPELINE_ABORTED = "pipeline aborted"


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
        # A batch's rows go in one statement, as parallel arrays in PostgreSQL's binary format
        # (`%b`): row by row, or as text arrays, psycopg's dumping was a third of the client's
        # time per command (text arrays: ~9 µs a row, binary: ~1 µs).
        self.insert_receipts_statement = SQL(
            "INSERT INTO {table} (account_id, command_id, payload_sha256, reply_json, traceparent) "
            "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[])"
        ).format(table=table)
        self.insert_from_arrays_statement = insert_events_statement(
            self.datastore, self.events_table_name, returning_ids=True
        )
        self.select_traceparents_statement = SQL(
            "SELECT r.account_id, r.command_id, r.traceparent FROM {table} r "
            "JOIN unnest(%s::text[], %s::text[]) AS k(account_id, command_id) "
            "USING (account_id, command_id) WHERE r.traceparent IS NOT NULL"
        ).format(table=table)
        self.select_taken_versions_statement = SQL(
            "SELECT e.originator_id, e.originator_version FROM {events} e "
            "JOIN unnest(%s::text[], %s::bigint[]) AS k(originator_id, originator_version) "
            "USING (originator_id, originator_version)"
        ).format(events=Identifier(self.datastore.schema, self.events_table_name))
        self.select_versions_statement = SQL(
            "SELECT originator_id, max(originator_version) AS version FROM {events} "
            "WHERE originator_id = ANY(%s) GROUP BY originator_id"
        ).format(events=Identifier(self.datastore.schema, self.events_table_name))
        # One round trip for a whole batch: the keys travel as two parallel arrays.
        self.select_receipts_statement = SQL(
            "SELECT r.account_id, r.command_id, r.payload_sha256, r.reply_json FROM {table} r "
            "JOIN unnest(%s::text[], %s::text[]) AS k(account_id, command_id) "
            "USING (account_id, command_id)"
        ).format(table=table)
        self._create_kafka_tables(events_table_name.removesuffix("_events"))
        self._create_follower_tables(events_table_name.removesuffix("_events"))

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """As the library's, with `single_attempt=True` asking for no retry inside.

        The library retries a connection error 10 times (0.2 s apart, each wait for a pooled
        connection up to the connect timeout): ~50 s with the database down. The Kafka consumer
        applies batches on its event loop's thread and has bounded retries of its own, between
        which its loop answers the broker; it asks for one attempt (at most one connect
        timeout) so that its loop is never blocked for longer than that.
        """
        insert: Any = super().insert_events
        if writes_of(kwargs).single_attempt:
            insert = functools.partial(insert.__wrapped__, self)
        try:
            return cast(Sequence[int] | None, insert(stored_events, **kwargs))
        except IntegrityError as error:
            if POSITION_CONFLICT in str(error):
                raise KafkaPositionConflict(str(error)) from error
            if self.receipts_primary_key in str(error):
                raise ReceiptConflict(str(error)) from error
            raise
        except OperationalError as error:
            if _PIPELINE_ABORTED not in str(error):
                raise
            conflict = self._conflict_behind_aborted_pipeline(stored_events, kwargs)
            if conflict is None:
                raise
            raise conflict from error

    def _conflict_behind_aborted_pipeline(
        self, stored_events: Sequence[StoredEvent], kwargs: dict[str, Any]
    ) -> PersistenceError | None:
        """Which conflict, if any, failed a save that psycopg reported as `pipeline aborted`.

        When the statement that fails is one psycopg is preparing on that connection (its 6th
        run there: `prepare_threshold`), the error comes back as `pipeline aborted`, which the
        library calls operational (transient), instead of the unique violation it was. Retried
        as transient, a conflict would fail the same way until the retries ran out. So the
        conflicts a save can meet are looked for: a Kafka position that moved, a receipt that
        exists, an event version that is taken. None found: it was transient after all.
        """
        writes = writes_of(kwargs)
        positions, receipts = writes.kafka_positions, writes.receipts
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            for position in positions:
                curs.execute(
                    self.select_position_statement,
                    (position.consumer_group, position.topic, position.partition),
                )
                row = curs.fetchone()
                stored = None if row is None else row["next_offset"]
                if stored != position.expected_offset:
                    return KafkaPositionConflict(
                        f"{POSITION_CONFLICT}: {position.topic} {position.partition} is at "
                        f"{stored}, expected {position.expected_offset}"
                    )
            if stored_events:
                curs.execute(
                    self.select_taken_versions_statement,
                    (
                        [str(e.originator_id) for e in stored_events],
                        [e.originator_version for e in stored_events],
                    ),
                )
                taken = curs.fetchall()
                if taken:
                    return IntegrityError(
                        f"event versions already stored: {[tuple(r.values()) for r in taken]}"
                    )
        existing = self.select_receipts([(r.account_id, r.command_id) for r in receipts])
        if existing:
            return ReceiptConflict(
                f"{self.receipts_primary_key}: receipts exist for {sorted(existing)}"
            )
        return None

    def _insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> None:
        writes = writes_of(kwargs)
        read_versions = writes.read_versions
        if read_versions:
            curs.execute(self.select_versions_statement, (list(read_versions),))
            stored = {row["originator_id"]: row["version"] for row in curs.fetchall()}
            stale = sorted(a for a, version in read_versions.items() if stored.get(a) != version)
            if stale:
                raise StaleRead(f"accounts written since they were read: {stale[:5]}")
        positions = writes.kafka_positions
        for position in positions:
            curs.execute(
                self.advance_position_statement,
                (
                    position.consumer_group,
                    position.topic,
                    position.partition,
                    position.expected_offset,
                    position.next_offset,
                ),
            )
        replies = writes.kafka_replies
        if replies:
            curs.execute(
                self.insert_replies_statement,
                (
                    [r.consumer_group for r in replies],
                    [r.topic for r in replies],
                    [r.partition for r in replies],
                    [r.offset for r in replies],
                    [r.reply_topic for r in replies],
                    [r.key for r in replies],
                    [r.value for r in replies],
                    [r.correlation_id for r in replies],
                ),
            )
        receipts = writes.receipts
        if receipts:
            traces = writes.command_traces
            curs.execute(
                self.insert_receipts_statement,
                (
                    [r.account_id for r in receipts],
                    [r.command_id for r in receipts],
                    [r.payload_sha256 for r in receipts],
                    [r.reply_json for r in receipts],
                    [traces.get((r.account_id, r.command_id)) for r in receipts],
                ),
            )
        super()._insert_events(curs, stored_events, **kwargs)

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        """As the library's (the table lock, the notification, the insert returning the ids
        in order), the events sent as parallel binary arrays rather than composite values."""
        self._lock_table(curs)
        self._notify_channel(curs)
        insert_events(curs, self.insert_from_arrays_statement, stored_events)

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

        One round trip per table for a whole batch of accounts, instead of two queries per
        account: what a freshly started ledger spends most of its time on otherwise.
        """
        if not originator_ids:
            return {}
        streams: dict[str, list[StoredEvent]] = {}
        after_version = dict.fromkeys(originator_ids, 0)
        schema = Identifier(self.datastore.schema)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            if snapshots_table_name is not None:
                curs.execute(
                    SQL(
                        "SELECT DISTINCT ON (originator_id) originator_id, originator_version, "
                        "topic, state FROM {schema}.{table} WHERE originator_id = ANY(%s) "
                        "ORDER BY originator_id, originator_version DESC"
                    ).format(schema=schema, table=Identifier(snapshots_table_name)),
                    (list(originator_ids),),
                )
                for row in curs.fetchall():
                    streams[row["originator_id"]] = [_stored_event(row)]
                    after_version[row["originator_id"]] = row["originator_version"]
            curs.execute(
                SQL(
                    "SELECT e.originator_id, e.originator_version, e.topic, e.state "
                    "FROM {schema}.{table} e "
                    "JOIN unnest(%s::text[], %s::bigint[]) AS k(originator_id, after_version) "
                    "ON e.originator_id = k.originator_id "
                    "AND e.originator_version > k.after_version "
                    "ORDER BY e.originator_id, e.originator_version"
                ).format(schema=schema, table=Identifier(self.events_table_name)),
                (list(after_version), list(after_version.values())),
            )
            for row in curs.fetchall():
                streams.setdefault(row["originator_id"], []).append(_stored_event(row))
        return streams


def _stored_event(row: DictRow) -> StoredEvent:
    return StoredEvent(
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )
