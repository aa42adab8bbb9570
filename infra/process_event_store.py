"""What the components of one process share: one event-store application (and one asyncpg
pool, `infra/process_pool.py`).

`credits run all` runs six components in one process. Each opening its own event-store
application and pool held 41 PostgreSQL connections at the default pool size; PostgreSQL's
default allows 100, so a handful of processes exhausted it. Components borrow these instead:
the first borrower opens, the last one to give back closes.

- The event-store application is the ledger's (its cache not fast-forwarded: the ledger is its
  partitions' only writer). The relay, the scheduler and the projector only read through it
  (notifications, stored accounts, the mapper), which the cache setting does not affect. Its
  psycopg pool is thread-safe: the ledger borrows it from its own thread.
- The asyncpg pool is bound to the event loop that opened it, so there is one per loop: the
  main loop's components (api, projector, payments) share one.

At the defaults (`CREDITS_PG_POOL_SIZE=4`) a process holds at most 4 event-store connections,
4 asyncpg ones, the relay's lock connection, the projector's and the API's LISTEN connections
and a `/readyz` probe's: 12 (a test counts them in `pg_stat_activity` while the process works).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings


def ledger_env(settings: Settings) -> dict[str, str]:
    """The event store as the ledger needs it: cached accounts trusted, not fast-forwarded. A
    conflict with another writer shows as a version conflict, on which the ledger forgets the
    account and retries (services/ledger/service.py)."""
    return {**event_store_env(settings), "AGGREGATE_CACHE_FASTFORWARD": "n"}


@dataclass
class _EventStoreShare:
    app: LedgerApplication
    borrowers: int


# By database (a process, a test session, may use several); guarded by the lock: the ledger
# borrows from its own thread.
_EVENT_STORES: dict[tuple[tuple[str, str], ...], _EventStoreShare] = {}
_EVENT_STORES_LOCK = threading.Lock()


def borrow_event_store(settings: Settings) -> LedgerApplication:
    """This process's event-store application on `settings`' database, opened on first use
    (blocking: call it on a worker thread). Raises what opening raises (PostgreSQL away): the
    caller retries."""
    env = ledger_env(settings)
    key = tuple(sorted(env.items()))
    with _EVENT_STORES_LOCK:
        share = _EVENT_STORES.get(key)
        if share is None:
            share = _EVENT_STORES[key] = _EventStoreShare(LedgerApplication(env=env), 0)
        share.borrowers += 1
        return share.app


def give_back_event_store(app: LedgerApplication) -> None:
    """Closes the application when its last borrower gives it back."""
    with _EVENT_STORES_LOCK:
        key, share = next(
            ((key, share) for key, share in _EVENT_STORES.items() if share.app is app),
            (None, None),
        )
        assert key is not None and share is not None, "given back an event store not lent"
        share.borrowers -= 1
        if share.borrowers == 0:
            del _EVENT_STORES[key]
            app.close()
