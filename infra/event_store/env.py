"""The eventsourcing environment of the ledger application on PostgreSQL, from the settings."""

from __future__ import annotations

from infra.settings import Settings

# eventsourcing resolves this topic to the factory (one class, named explicitly).
PERSISTENCE_TOPIC = "infra.event_store.factory:CreditsPostgresFactory"


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
