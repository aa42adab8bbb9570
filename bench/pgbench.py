"""The raw PostgreSQL ceiling: pgbench running the inserts the event store does, nothing else.

Two shapes, on a table shaped like eventsourcing's stored events (text id, version, topic,
~300-byte state, unique (id, version), gap-free notification ids through a table lock):
- one event per transaction, as a ledger without batching would write;
- 500 events per transaction, as the ledger's Kafka consumer batches.
Our end-to-end figures are read against these.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from bench.rows import BenchRow
from infra.settings import Settings

DURATION_SECONDS = 5
CLIENTS = 2
BATCH_EVENTS = 500

_TABLE = """
DROP TABLE IF EXISTS pgbench_events;
CREATE TABLE pgbench_events (
    notification_id bigserial PRIMARY KEY,
    originator_id text NOT NULL,
    originator_version bigint NOT NULL,
    topic text NOT NULL,
    state bytea NOT NULL,
    UNIQUE (originator_id, originator_version)
);
"""

_ONE_PER_TRANSACTION = """
BEGIN;
LOCK TABLE pgbench_events IN EXCLUSIVE MODE;
INSERT INTO pgbench_events (originator_id, originator_version, topic, state)
VALUES (md5(random()::text), 1, 'domain.account:Account.Consumed',
        convert_to(repeat('x', 300), 'UTF8'));
COMMIT;
"""

_BATCH_PER_TRANSACTION = f"""
BEGIN;
LOCK TABLE pgbench_events IN EXCLUSIVE MODE;
INSERT INTO pgbench_events (originator_id, originator_version, topic, state)
SELECT md5(random()::text || g::text), 1, 'domain.account:Account.Consumed',
       convert_to(repeat('x', 300), 'UTF8')
FROM generate_series(1, {BATCH_EVENTS}) AS g;
COMMIT;
"""


def pgbench_rows(settings: Settings) -> list[BenchRow]:
    binary = shutil.which("pgbench")
    if binary is None:
        raise RuntimeError("pgbench is not installed (Debian: postgresql-client)")
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        conn.execute(_TABLE)
    rows = [
        BenchRow(
            "raw PostgreSQL: 1 event per transaction (pgbench)",
            _tps(binary, settings, _ONE_PER_TRANSACTION),
            "events/s",
            f"{CLIENTS} clients, table lock + insert, fsync on",
        ),
        BenchRow(
            f"raw PostgreSQL: {BATCH_EVENTS} events per transaction (pgbench)",
            _tps(binary, settings, _BATCH_PER_TRANSACTION) * BATCH_EVENTS,
            "events/s",
            f"{CLIENTS} clients, the ledger's batch shape",
        ),
    ]
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS pgbench_events")
    return rows


def _tps(binary: str, settings: Settings, script: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "script.sql"
        path.write_text(script)
        completed = subprocess.run(
            [
                binary,
                "--no-vacuum",
                f"--client={CLIENTS}",
                f"--jobs={CLIENTS}",
                f"--time={DURATION_SECONDS}",
                f"--file={path}",
                f"--host={settings.pg_host}",
                f"--port={settings.pg_port}",
                f"--username={settings.pg_user}",
                settings.pg_database,
            ],
            env={**os.environ, "PGPASSWORD": settings.pg_password},
            capture_output=True,
            text=True,
            timeout=DURATION_SECONDS * 6,
            check=True,
        )
    match = re.search(r"tps = ([0-9.]+)", completed.stdout)
    if match is None:
        raise RuntimeError(f"no tps in pgbench output: {completed.stdout[-500:]}")
    return float(match.group(1))
