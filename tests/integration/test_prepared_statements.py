"""The event store's connections survive an aborted pipeline.

psycopg prepares a statement by itself on its 6th run and, in pipeline mode, records it as
prepared when it is queued; when the pipeline aborts before it (a receipt or version conflict
earlier in the same save), the server never parsed it, and the next use on that connection
failed with `prepared statement "_pg3_N" does not exist` (the ledger under concurrent, retried
writes). The store's connections prepare only what the code asks for, which psycopg checks."""

from __future__ import annotations

import psycopg
import pytest

from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pg_database")]


def test_a_statement_whose_sixth_run_was_aborted_runs_again(settings: Settings):
    app = LedgerApplication(env=event_store_env(settings))
    try:
        datastore = app.recorder.datastore  # type: ignore[attr-defined]
        with datastore.get_connection() as conn:
            conn.execute("CREATE TEMP TABLE taken (id int PRIMARY KEY)")
            conn.execute("CREATE TEMP TABLE written (v int)")
            conn.execute("INSERT INTO taken VALUES (1)")

            def write(value: int, *, conflict_first: bool = False) -> None:
                # As the recorder saves: errors are kept until the pipeline has closed.
                error: Exception | None = None
                with conn.pipeline() as pipeline, conn.transaction(), conn.cursor() as cur:
                    try:
                        if conflict_first:
                            cur.execute("INSERT INTO taken VALUES (%s)", (1,), prepare=True)
                        cur.execute("INSERT INTO written (v) VALUES (%s)", (value,))
                        pipeline.sync()
                    except Exception as caught:
                        error = caught
                if error is not None:
                    raise error

            for value in range(5):
                write(value)
            # The conflict comes back as itself or, when the pipeline's results are read only
            # as it closes, as the aborted pipeline: either way the 6th run never reached the
            # server.
            with pytest.raises((psycopg.errors.UniqueViolation, psycopg.errors.PipelineAborted)):
                write(5, conflict_first=True)  # the 6th run, behind the conflict
            write(6)  # was: prepared statement "_pg3_N" does not exist

            assert conn.execute("SELECT count(*) FROM written").fetchone() == {"count": 6}
    finally:
        app.close()


def test_the_store_never_prepares_a_statement_by_its_run_count(settings: Settings):
    """Whether psycopg reads an aborted pipeline's results inside the block or as it closes is
    a matter of timing, so the test above cannot always see the bug; this one always can: a
    statement run many times on a store connection is still not prepared on the server."""
    app = LedgerApplication(env=event_store_env(settings))
    try:
        datastore = app.recorder.datastore  # type: ignore[attr-defined]
        with datastore.get_connection() as conn:
            for _ in range(20):
                conn.execute("SELECT 1 AS one WHERE %s", (True,))
            # This statement only: the pool may hand out the connection the test above used,
            # where it prepared a statement on purpose (`prepare=True`).
            prepared = conn.execute(
                "SELECT count(*) AS n FROM pg_prepared_statements "
                "WHERE statement LIKE 'SELECT 1 AS one WHERE%%'"
            ).fetchone()
            assert prepared == {"n": 0}
    finally:
        app.close()
