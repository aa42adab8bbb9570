"""PostgreSQL connection pool use, read from the pools themselves when `/metrics` is scraped.

Two kinds of pool live in a process: asyncpg's (the read side, the API, payments) and psycopg's
under the event store (eventsourcing). A closed pool is dropped (asyncpg's pools take no weak
reference); the pools of one kind are summed (a label per pool object would grow with every
restart of a component).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from infra.metrics import REGISTRY

STATES = ("in_use", "idle", "max", "waiting")


class PoolCollector(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[str, list[Any]] = {"asyncpg": [], "event_store": []}

    def track(self, kind: str, pool: Any) -> None:
        with self._lock:
            self._pools[kind] = [p for p in self._pools[kind] if not _closed(kind, p)]
            self._pools[kind].append(pool)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "credits_pg_pool_connections",
            "PostgreSQL connections of this process's pools, by pool kind (asyncpg: read side, "
            "API, payments; event_store: the ledger's and followers' psycopg pool) and state "
            "(in_use, idle, max: the pool's bound, waiting: requests waiting for one).",
            labels=["pool", "state"],
        )
        with self._lock:
            for kind, found in self._pools.items():
                self._pools[kind] = [p for p in found if not _closed(kind, p)]
            pools = {kind: list(found) for kind, found in self._pools.items()}
        for kind, found in pools.items():
            totals = dict.fromkeys(STATES, 0)
            for pool in found:
                for state, value in _use(kind, pool).items():
                    totals[state] += value
            for state, value in totals.items():
                family.add_metric([kind, state], value)
        yield family


def _closed(kind: str, pool: Any) -> bool:
    return bool(pool.is_closing() if kind == "asyncpg" else pool.closed)


def _use(kind: str, pool: Any) -> dict[str, int]:
    if kind == "asyncpg":
        size, idle = pool.get_size(), pool.get_idle_size()
        return {"in_use": size - idle, "idle": idle, "max": pool.get_max_size(), "waiting": 0}
    stats = pool.get_stats()
    size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
    return {
        "in_use": size - available,
        "idle": available,
        "max": stats.get("pool_max", 0),
        "waiting": stats.get("requests_waiting", 0),
    }


POOLS = PoolCollector()
REGISTRY.register(POOLS)
