"""A whole save in one statement: a PL/pgSQL function that writes everything a batch writes.

A save used to be a pipelined transaction of ~8 statements and 3 round trips (the stale-read
check, then the positions, replies, receipts, lock, notification and events, then the commit).
psycopg's client side of that, not the server, was most of a small batch's cost: ~1.5 ms of CPU
for a one-command batch, ~2.3 ms of fixed cost for a 12-command one. One call of this function,
run as an autocommit statement, is one round trip: the server runs the same steps in the same
order, in the statement's own transaction, and commits (fsync included) before it answers.

Every failure keeps its meaning: a position or receipt conflict and a stale read are raised
with SQLSTATE unique_violation (IntegrityError in the library) and told apart by their message
(`recorder.py`); a duplicate event version is the events table's own unique violation; data
PostgreSQL refuses is still a DataError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import eventsourcing.postgres as es_postgres
from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Composed, Identifier, Literal

from infra.event_store.batch_writes import BatchWrites

# The message of a stale read (recorder.py turns it into `StaleRead`).
STALE_READ = "accounts written since they were read"


def create_save_batch_function(
    datastore: es_postgres.PostgresDatastore,
    *,
    function: str,
    events_table: str,
    receipts_table: str,
    replies_table: str,
    advance_position_function: str,
    channel: str,
) -> Composed:
    """`CREATE OR REPLACE FUNCTION`: the steps a save takes, in the order it took them."""
    schema = datastore.schema
    events = Identifier(schema, events_table)
    return SQL(
        "CREATE OR REPLACE FUNCTION {function}("
        "read_ids text[], read_versions bigint[], "
        "position_groups text[], position_topics text[], position_partitions int[], "
        "position_expected bigint[], position_next bigint[], "
        "reply_groups text[], reply_topics text[], reply_partitions int[], "
        "reply_offsets bigint[], reply_reply_topics text[], reply_keys bytea[], "
        "reply_values bytea[], reply_correlation_ids bytea[], "
        "receipt_accounts text[], receipt_commands text[], receipt_sha256s text[], "
        "receipt_replies text[], receipt_traceparents text[], "
        "event_ids {id_type}[], event_versions bigint[], event_topics text[], "
        "event_states bytea[]) "
        "RETURNS SETOF bigint AS $$ "
        "DECLARE stale text[]; "
        "BEGIN "
        # A refusal writes no event: that the accounts it read are unchanged is checked here.
        "IF cardinality(read_ids) > 0 THEN "
        "  SELECT array_agg(k.id ORDER BY k.id) INTO stale "
        "  FROM unnest(read_ids, read_versions) AS k(id, version) "
        "  WHERE (SELECT max(e.originator_version) FROM {events} e "
        "         WHERE e.originator_id = k.id) IS DISTINCT FROM k.version; "
        "  IF stale IS NOT NULL THEN "
        "    RAISE EXCEPTION '{stale_read}: %', stale[1:5] USING ERRCODE = 'unique_violation'; "
        "  END IF; "
        "END IF; "
        "FOR i IN 1 .. coalesce(cardinality(position_groups), 0) LOOP "
        "  PERFORM {advance}(position_groups[i], position_topics[i], position_partitions[i], "
        "    position_expected[i], position_next[i]); "
        "END LOOP; "
        "IF cardinality(reply_groups) > 0 THEN "
        "  INSERT INTO {replies} (consumer_group, topic, partition, record_offset, "
        "    reply_topic, reply_key, reply_value, correlation_id) "
        "  SELECT * FROM unnest(reply_groups, reply_topics, reply_partitions, reply_offsets, "
        "    reply_reply_topics, reply_keys, reply_values, reply_correlation_ids); "
        "END IF; "
        "IF cardinality(receipt_accounts) > 0 THEN "
        "  INSERT INTO {receipts} (account_id, command_id, payload_sha256, reply_json, "
        "    traceparent) "
        "  SELECT * FROM unnest(receipt_accounts, receipt_commands, receipt_sha256s, "
        "    receipt_replies, receipt_traceparents); "
        "END IF; "
        "IF cardinality(event_ids) > 0 THEN "
        # The library's lock: commit order is notification order, so readers see no gaps.
        "  PERFORM set_config('lock_timeout', {lock_timeout}, true); "
        "  LOCK TABLE {events} IN EXCLUSIVE MODE; "
        "  PERFORM pg_notify({channel}, ''); "
        "  RETURN QUERY INSERT INTO {events} (originator_id, originator_version, topic, state) "
        "    SELECT * FROM unnest(event_ids, event_versions, event_topics, event_states) "
        "    RETURNING notification_id; "
        "END IF; "
        "END $$ LANGUAGE plpgsql"
    ).format(
        function=Identifier(schema, function),
        id_type=SQL(datastore.originator_id_type),
        events=events,
        stale_read=SQL(STALE_READ),
        advance=Identifier(schema, advance_position_function),
        replies=Identifier(schema, replies_table),
        receipts=Identifier(schema, receipts_table),
        lock_timeout=Literal(f"{datastore.lock_timeout}s"),
        channel=Literal(channel),
    )


def save_batch_statement(datastore: es_postgres.PostgresDatastore, function: str) -> Composed:
    # Binary arrays (`%b`): psycopg dumps them at ~1 µs a row, text arrays at ~9 µs.
    return SQL(
        "SELECT notification_id FROM {function}("
        "%b::text[], %b::bigint[], "
        "%b::text[], %b::text[], %b::int[], %b::bigint[], %b::bigint[], "
        "%b::text[], %b::text[], %b::int[], %b::bigint[], %b::text[], %b::bytea[], %b::bytea[], "
        "%b::bytea[], "
        "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
        "%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[]) AS notification_id"
    ).format(
        function=Identifier(datastore.schema, function), id_type=SQL(datastore.originator_id_type)
    )


def save_batch_arguments(
    writes: BatchWrites, stored_events: Sequence[StoredEvent]
) -> tuple[list[Any], ...]:
    """The function's arguments, as parallel arrays in the order of its parameters."""
    read = writes.read_versions
    positions = writes.kafka_positions
    replies = writes.kafka_replies
    receipts = writes.receipts
    traces = writes.command_traces
    return (
        list(read),
        list(read.values()),
        [p.consumer_group for p in positions],
        [p.topic for p in positions],
        [p.partition for p in positions],
        [p.expected_offset for p in positions],
        [p.next_offset for p in positions],
        [r.consumer_group for r in replies],
        [r.topic for r in replies],
        [r.partition for r in replies],
        [r.offset for r in replies],
        [r.reply_topic for r in replies],
        [r.key for r in replies],
        [r.value for r in replies],
        [r.correlation_id for r in replies],
        [r.account_id for r in receipts],
        [r.command_id for r in receipts],
        [r.payload_sha256 for r in receipts],
        [r.reply_json for r in receipts],
        [traces.get((r.account_id, r.command_id)) for r in receipts],
        [e.originator_id for e in stored_events],
        [e.originator_version for e in stored_events],
        [e.topic for e in stored_events],
        [e.state for e in stored_events],
    )
