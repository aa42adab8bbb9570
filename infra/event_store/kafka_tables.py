"""The Kafka consumer's tables of the event store: where each consumer group is in each
partition, and the replies saved with the batch that produced them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import eventsourcing.postgres as es_postgres
from eventsourcing.persistence import PersistenceError
from psycopg.sql import SQL, Identifier


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


class StoredReply(NamedTuple):
    """A reply saved with the batch that produced it, so a crash before it is sent loses nothing.

    Keyed by the command record's position; the consumer re-sends it when the record is
    delivered again, and prunes replies below the offset it has committed to Kafka.

    A named tuple, immutable like a frozen dataclass: the ledger builds one or two per command,
    and a frozen dataclass's `__init__` (one `object.__setattr__` per field) cost five times as
    much.
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


class KafkaPositionConflict(PersistenceError):
    """Another consumer moved the partition's position: this batch was applied already.

    Not an `IntegrityError`: deciding the batch again cannot help; the consumer must reread
    where the partition stands.
    """


POSITION_CONFLICT = "kafka position conflict"


class KafkaTables(es_postgres.PostgresRecorder):
    """The recorder's part that creates and reads the Kafka tables (`batch_function.py` writes them
    in the transaction of a save)."""

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
        # Compare-and-set in the database, called by the save function (batch_function.py) in
        # the transaction that applies the batch. The error's SQLSTATE is unique_violation so
        # that the library maps it to IntegrityError; insert_events turns it into a position
        # conflict.
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
                conflict=SQL(POSITION_CONFLICT),
            )
        )
        self.select_positions_statement = SQL(
            "SELECT partition, next_offset FROM {positions} "
            "WHERE consumer_group = %s AND topic = %s"
        ).format(positions=positions)
        self.select_replies_statement = SQL(
            "SELECT record_offset, reply_topic, reply_key, reply_value, correlation_id "
            "FROM {replies} WHERE consumer_group = %s AND topic = %s AND partition = %s "
            "AND record_offset >= %s AND record_offset < %s ORDER BY record_offset"
        ).format(replies=replies)
        self.prune_replies_statement = SQL(
            "DELETE FROM {replies} WHERE consumer_group = %s AND topic = %s AND partition = %s "
            "AND record_offset < %s"
        ).format(replies=replies)

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
