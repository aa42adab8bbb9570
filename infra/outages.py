"""What an outage looks like to each client library: the errors that mean "the server is away
or restarting, try again", as opposed to a fault that retrying cannot fix.

Components retry these with infra/retry.retry for as long as the outage lasts (DESIGN §6) and
let anything else through. One list per client library, so that every component agrees on
what a lost connection is.
"""

from __future__ import annotations

import asyncpg
import psycopg
from aiokafka.errors import KafkaError
from eventsourcing.persistence import InterfaceError as StoreInterfaceError
from eventsourcing.persistence import OperationalError as StoreOperationalError

# psycopg, directly or through the eventsourcing recorder (which wraps psycopg's errors in its
# own). OperationalError covers a refused or broken connection, a server shutting down or
# starting up (57P01, 57P03) and psycopg_pool's PoolTimeout.
POSTGRES_OUTAGE: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    StoreOperationalError,
    StoreInterfaceError,
    OSError,
    TimeoutError,
)

# asyncpg (the read side). PostgresConnectionError: class 08 (connection lost or refused);
# OperatorInterventionError: class 57 (shutdown, starting up, a statement cancelled);
# InterfaceError: the connection was closed under the client.
ASYNCPG_OUTAGE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)

# aiokafka: every error of the client, retriable or not. A broker that is away, a leader that
# moves and a request that times out are retriable; the others (a record too large for the
# topic, an authorization refused) are fixed by changing the broker's configuration, after
# which a retry works: the component says why it is not ready meanwhile.
KAFKA_OUTAGE: tuple[type[BaseException], ...] = (KafkaError, OSError, TimeoutError)
