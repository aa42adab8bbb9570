"""The event store on PostgreSQL: eventsourcing's recorder plus command receipts.

Receipts (`infra/receipts.py`) are inserted in the same transaction as the events and the
tracking position, so a command's effect, its receipt and (for Kafka) the offset it came from
commit together or not at all. eventsourcing's database-functions mode is never used: in 9.5 it
takes no table lock and drops tracking rows (DESIGN §8).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import eventsourcing.postgres as es_postgres
import psycopg
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    IntegrityError,
    Notification,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    StoredEvent,
)
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal

from infra.receipts import Receipt, ReceiptConflict
from infra.schema_lock import EVENT_STORE_LOCK_KEY
from infra.settings import Settings

# eventsourcing resolves this topic to the factory below (one class, named explicitly).
PERSISTENCE_TOPIC = "infra.event_store:CreditsPostgresFactory"


@dataclass(frozen=True)
class KafkaPosition:
    """Where a consumer group is in one partition: the next offset it will apply.

    Saved in the transaction that applies the records before `next_offset`, and only if the
    stored position still equals `expected_offset` (None: nothing stored yet). A consumer that
    lost its partition to another (a rebalance it has not noticed yet) therefore cannot apply
    a record twice: its transaction fails with `KafkaPositionConflict`.
    """

    consumer_group: str
    topic: str
    partition: int
    expected_offset: int | None
    next_offset: int


@dataclass(frozen=True)
class StoredReply:
    """A reply saved with the batch that produced it, so a crash before it is sent loses nothing.

    Keyed by the command record's position; the consumer re-sends it when the record is
    delivered again, and prunes replies below the offset it has committed to Kafka.
    """

    consumer_group: str
    topic: str
    partition: int
    offset: int
    reply_topic: str
    key: bytes | None
    value: bytes
    correlation_id: bytes | None
    # The ledger's span for the command (W3C traceparent), sent in the reply's headers. Not
    # kept: a reply sent again after a crash goes without it.
    traceparent: bytes | None = None


class StaleRead(IntegrityError):
    """An account a save decided on without changing it was written since it was read.

    A refusal writes no event, so no version conflict would catch a decision taken on a cached
    account that another writer has moved on: the save checks those accounts' versions.
    """


class KafkaPositionConflict(PersistenceError):
    """Another consumer moved the partition's position: this batch was applied already.

    Not an `IntegrityError`: deciding the batch again cannot help; the consumer must reread
    where the partition stands.
    """


_POSITION_CONFLICT = "kafka position conflict"
# psycopg's message when a statement of a pipeline fails after an earlier one did.
_PIPELINE_ABORTED = "pipeline aborted"


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
        self.insert_receipt_statement = SQL(
            "INSERT INTO {table} (account_id, command_id, payload_sha256, reply_json, traceparent) "
            "VALUES (%s, %s, %s, %s, %s)"
        ).format(table=table)
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

    def _create_kafka_tables(self, prefix: str) -> None:
        positions = Identifier(self.datastore.schema, prefix + "_kafka_positions")
        replies = Identifier(self.datastore.schema, prefix + "_kafka_replies")
        advance = Identifier(self.datastore.schema, prefix + "_advance_kafka_position")
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {positions} ("
                "consumer_group text NOT NULL, topic text NOT NULL, partition int NOT NULL, "
                "next_offset bigint NOT NULL, "
                "PRIMARY KEY (consumer_group, topic, partition))"
            ).format(positions=positions)
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {replies} ("
                "consumer_group text NOT NULL, topic text NOT NULL, partition int NOT NULL, "
                "record_offset bigint NOT NULL, reply_topic text NOT NULL, reply_key bytea, "
                "reply_value bytea NOT NULL, correlation_id bytea, "
                "PRIMARY KEY (consumer_group, topic, partition, record_offset))"
            ).format(replies=replies)
        )
        # Compare-and-set in the database, so the check and the write are one statement of the
        # transaction that applies the batch. The error's SQLSTATE is unique_violation so that
        # the library maps it to IntegrityError; insert_events turns it into a position conflict.
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {advance}("
                "g text, t text, p int, expected bigint, next bigint) RETURNS void AS $$ "
                "DECLARE stored bigint; "
                "BEGIN "
                "SELECT next_offset INTO stored FROM {positions} "
                "WHERE consumer_group = g AND topic = t AND partition = p FOR UPDATE; "
                "IF NOT FOUND THEN "
                "  IF expected IS NOT NULL THEN "
                "    RAISE EXCEPTION '{conflict}: % % % has no position, expected %', "
                "      g, t, p, expected USING ERRCODE = 'unique_violation'; "
                "  END IF; "
                "  INSERT INTO {positions} VALUES (g, t, p, next); "
                "ELSIF expected IS NULL OR stored <> expected THEN "
                "  RAISE EXCEPTION '{conflict}: % % % is at %, expected %', "
                "    g, t, p, stored, expected USING ERRCODE = 'unique_violation'; "
                "ELSE "
                "  UPDATE {positions} SET next_offset = next "
                "  WHERE consumer_group = g AND topic = t AND partition = p; "
                "END IF; "
                "END $$ LANGUAGE plpgsql"
            ).format(
                advance=advance,
                positions=positions,
                conflict=SQL(_POSITION_CONFLICT),
            )
        )
        self.advance_position_statement = SQL("SELECT {advance}(%s, %s, %s, %s, %s)").format(
            advance=advance
        )
        self.select_position_statement = SQL(
            "SELECT next_offset FROM {positions} "
            "WHERE consumer_group = %s AND topic = %s AND partition = %s"
        ).format(positions=positions)
        self.select_positions_statement = SQL(
            "SELECT partition, next_offset FROM {positions} "
            "WHERE consumer_group = %s AND topic = %s"
        ).format(positions=positions)
        self.insert_reply_statement = SQL(
            "INSERT INTO {replies} (consumer_group, topic, partition, record_offset, "
            "reply_topic, reply_key, reply_value, correlation_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(replies=replies)
        self.select_replies_statement = SQL(
            "SELECT record_offset, reply_topic, reply_key, reply_value, correlation_id "
            "FROM {replies} WHERE consumer_group = %s AND topic = %s AND partition = %s "
            "AND record_offset >= %s AND record_offset < %s ORDER BY record_offset"
        ).format(replies=replies)
        self.prune_replies_statement = SQL(
            "DELETE FROM {replies} WHERE consumer_group = %s AND topic = %s AND partition = %s "
            "AND record_offset < %s"
        ).format(replies=replies)

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
        if kwargs.get("single_attempt"):
            insert = functools.partial(insert.__wrapped__, self)
        try:
            return cast(Sequence[int] | None, insert(stored_events, **kwargs))
        except IntegrityError as error:
            if _POSITION_CONFLICT in str(error):
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
        positions: Sequence[KafkaPosition] = kwargs.get("kafka_positions") or ()
        receipts: Sequence[Receipt] = kwargs.get("receipts") or ()
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
                        f"{_POSITION_CONFLICT}: {position.topic} {position.partition} is at "
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
        read_versions: dict[str, int] = kwargs.get("read_versions") or {}
        if read_versions:
            curs.execute(self.select_versions_statement, (list(read_versions),))
            stored = {row["originator_id"]: row["version"] for row in curs.fetchall()}
            stale = sorted(a for a, version in read_versions.items() if stored.get(a) != version)
            if stale:
                raise StaleRead(f"accounts written since they were read: {stale[:5]}")
        positions: Sequence[KafkaPosition] = kwargs.get("kafka_positions") or ()
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
        replies: Sequence[StoredReply] = kwargs.get("kafka_replies") or ()
        if replies:
            curs.executemany(
                self.insert_reply_statement,
                [
                    (
                        r.consumer_group,
                        r.topic,
                        r.partition,
                        r.offset,
                        r.reply_topic,
                        r.key,
                        r.value,
                        r.correlation_id,
                    )
                    for r in replies
                ],
            )
        receipts: Sequence[Receipt] = kwargs.get("receipts") or ()
        if receipts:
            traces: dict[tuple[str, str], str] = kwargs.get("command_traces") or {}
            curs.executemany(
                self.insert_receipt_statement,
                [
                    (
                        r.account_id,
                        r.command_id,
                        r.payload_sha256,
                        r.reply_json,
                        traces.get((r.account_id, r.command_id)),
                    )
                    for r in receipts
                ],
            )
        super()._insert_events(curs, stored_events, **kwargs)

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

    def _create_follower_tables(self, prefix: str) -> None:
        """Readers of the notification log (relay, scheduler) and the scheduler's due index."""
        positions = Identifier(self.datastore.schema, prefix + "_follower_positions")
        due = Identifier(self.datastore.schema, prefix + "_due")
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {positions} ("
                "name text PRIMARY KEY, position bigint NOT NULL)"
            ).format(positions=positions)
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {due} ("
                "account_id text PRIMARY KEY, due_at timestamptz NOT NULL, "
                "fired_at timestamptz)"
            ).format(due=due)
        )
        self.sql_create_statements.append(
            SQL("CREATE INDEX IF NOT EXISTS {index} ON {due} (due_at)").format(
                index=Identifier(prefix + "_due_at_idx"), due=due
            )
        )
        self.select_follower_statement = SQL(
            "SELECT position FROM {positions} WHERE name = %s"
        ).format(positions=positions)
        # GREATEST: a follower that lost its lock and wakes up late cannot move a position back.
        self.save_follower_statement = SQL(
            "INSERT INTO {positions} (name, position) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE "
            "SET position = GREATEST({positions}.position, EXCLUDED.position)"
        ).format(positions=positions)
        self.upsert_due_statement = SQL(
            "INSERT INTO {due} (account_id, due_at, fired_at) VALUES (%s, %s, NULL) "
            "ON CONFLICT (account_id) DO UPDATE SET due_at = EXCLUDED.due_at, fired_at = NULL "
            "WHERE {due}.due_at <> EXCLUDED.due_at"
        ).format(due=due)
        self.delete_due_statement = SQL("DELETE FROM {due} WHERE account_id = %s").format(due=due)
        self.select_due_statement = SQL(
            "SELECT account_id, due_at FROM {due} "
            "WHERE due_at <= %s AND (fired_at IS NULL OR fired_at <= %s) "
            "ORDER BY due_at LIMIT %s"
        ).format(due=due)
        self.mark_fired_statement = SQL(
            "UPDATE {due} SET fired_at = %s WHERE account_id = %s AND due_at = %s"
        ).format(due=due)

    def select_follower_position(self, name: str) -> int:
        """The last notification id the named follower has handled (0: none yet)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_follower_statement, (name,))
            row = curs.fetchone()
        return 0 if row is None else int(row["position"])

    def save_follower_position(self, name: str, position: int) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.save_follower_statement, (name, position))

    def save_due_times(
        self, follower: str, position: int, due_at: dict[str, datetime | None]
    ) -> None:
        """Next due time per account (None: nothing due), with the position, in one transaction."""
        with self.datastore.transaction(commit=True) as curs:
            for account_id, when in sorted(due_at.items()):
                if when is None:
                    curs.execute(self.delete_due_statement, (account_id,))
                else:
                    curs.execute(self.upsert_due_statement, (account_id, when))
            curs.execute(self.save_follower_statement, (follower, position))

    def select_due(
        self, now: datetime, refire_before: datetime, limit: int
    ) -> list[tuple[str, datetime]]:
        """Accounts due by `now`, not fired since `refire_before`, earliest first."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_due_statement, (now, refire_before, limit))
            return [(row["account_id"], row["due_at"]) for row in curs.fetchall()]

    def mark_fired(self, fired: list[tuple[str, datetime]], fired_at: datetime) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for account_id, due_at in fired:
                curs.execute(self.mark_fired_statement, (fired_at, account_id, due_at))

    def select_kafka_positions(self, consumer_group: str, topic: str) -> dict[int, int]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_positions_statement, (consumer_group, topic))
            return {row["partition"]: row["next_offset"] for row in curs.fetchall()}

    def select_stored_replies(
        self, consumer_group: str, topic: str, partition: int, from_offset: int, to_offset: int
    ) -> list[StoredReply]:
        """Replies of records in [from_offset, to_offset) that are still kept."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.select_replies_statement,
                (consumer_group, topic, partition, from_offset, to_offset),
            )
            return [
                StoredReply(
                    consumer_group=consumer_group,
                    topic=topic,
                    partition=partition,
                    offset=row["record_offset"],
                    reply_topic=row["reply_topic"],
                    key=None if row["reply_key"] is None else bytes(row["reply_key"]),
                    value=bytes(row["reply_value"]),
                    correlation_id=(
                        None if row["correlation_id"] is None else bytes(row["correlation_id"])
                    ),
                )
                for row in curs.fetchall()
            ]

    def prune_stored_replies(
        self, consumer_group: str, topic: str, partition: int, below_offset: int
    ) -> None:
        """Replies below an offset committed to Kafka were sent: they will not be needed."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self.prune_replies_statement, (consumer_group, topic, partition, below_offset)
            )


def _stored_event(row: DictRow) -> StoredEvent:
    return StoredEvent(
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )


class CreditsPostgresFactory(es_postgres.PostgresFactory):
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


# A run count no statement reaches: psycopg never prepares by count (see the factory).
_ONLY_WHEN_ASKED = 2**31 - 1

POOL_RECONNECT_TIMEOUT_SECONDS = 5.0


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
        # One connection kept open; more opened as the process's components need them (the
        # ledger's batch, the relay's reads, the scheduler's), up to CREDITS_PG_POOL_SIZE in all;
        # beyond it callers wait, at most POSTGRES_MAX_WAITING of them.
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": str(settings.pg_pool_size - 1),
        "POSTGRES_MAX_WAITING": "64",
        # Inserts take a table lock (that is how the notification log stays gap-free); a writer
        # that cannot get it in 5 s fails and is retried rather than hanging.
        "POSTGRES_LOCK_TIMEOUT": "5",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "10",
        # No ping on every connection checkout (a round trip each time): a dead connection
        # raises a connection error, which the recorder retries on a fresh one anyway.
        "POSTGRES_PRE_PING": "n",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        "SINGLE_ROW_TRACKING": "y",
        "ORIGINATOR_ID_TYPE": "text",
        "CREATE_TABLE": "y",
    }
