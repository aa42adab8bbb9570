"""The notification-log followers' tables of the event store: each follower's position (relay,
scheduler) and the scheduler's index of when each account is next due."""

from __future__ import annotations

from datetime import datetime

import eventsourcing.postgres as es_postgres
from psycopg.sql import SQL, Identifier


class FollowerTables(es_postgres.PostgresRecorder):
    """The recorder's part that creates, reads and writes the followers' tables."""

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
