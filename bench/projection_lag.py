"""How far the read models trail the event store while a flood goes through the ledger.

The projector runs as its own process (`credits run projector`), beside the ledger, both
started for this phase alone (after the ledger's own phases, so their figures never include a
projector's CPU). Every SAMPLE_INTERVAL_SECONDS the head of the event store (the largest
notification id stored) is noted with the time; a sample is reached when every read model's
tracked position (`rm_tracking`) is at or past its head. The projector NOTIFYs each position it
commits (`credits_projected`, in the same transaction as the `rm_tracking` update), so the
time reached is when that notification comes, not a poll's later look. Lag of a sample = time
reached - time sampled.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from dataclasses import dataclass, field

import asyncpg

from bench.ledger_kafka import (
    ACCOUNTS,
    CATALOG_PATH,
    FIRST_LEDGER_INSTANCE_ID,
    THROUGHPUT_COMMANDS,
    ZIPF_EXPONENT,
    Replies,
    flood,
    start_ledger,
    start_runnable,
    zipf_accounts,
)
from bench.proc_cpu import CpuMeter
from bench.rows import BenchRow, percentile
from domain.catalog import load_catalog
from infra.event_store.env import event_store_env
from infra.kafka_clients import acknowledged_producer
from infra.ledger_application import LedgerApplication
from infra.settings import Settings, Topic
from projections.projector import PROJECTED_CHANNEL
from projections.registry import build_projections
from projections.store import TRACKING

SAMPLE_INTERVAL_SECONDS = 0.05
# The projector first catches up with every event of the phases before (about 60,000).
CATCH_UP_TIMEOUT_SECONDS = 120.0
# After the flood's last reply, the projector has this long to reach the last sample.
DRAIN_TIMEOUT_SECONDS = 60.0


def _events_table(settings: Settings) -> str:
    """The stored events table, named as the recorder names it."""
    app = LedgerApplication(env=event_store_env(settings))
    try:
        recorder = app.recorder
        schema = recorder.datastore.schema  # type: ignore[attr-defined]
        return f"{schema}.{recorder.events_table_name}"  # type: ignore[attr-defined]
    finally:
        app.close()


@dataclass
class LagSampler:
    """Samples the head, and notes when the slowest read model reaches each sample."""

    conn: asyncpg.Connection
    events_table: str
    names: list[str]
    positions: dict[str, int] = field(default_factory=dict)
    # (time sampled, head) not reached yet, in order; and the lags of those reached, in ms.
    pending: list[tuple[float, int]] = field(default_factory=list)
    lags_ms: list[float] = field(default_factory=list)

    async def start(self) -> None:
        """Listens, then reads where each read model stands once the projector has made them."""
        await self.conn.add_listener(PROJECTED_CHANNEL, self._projected)
        deadline = time.perf_counter() + CATCH_UP_TIMEOUT_SECONDS
        while True:
            with suppress(asyncpg.UndefinedTableError):
                rows = await self.conn.fetch(
                    f"SELECT projection, position FROM {TRACKING} "
                    "WHERE projection = ANY($1::text[])",
                    self.names,
                )
                for row in rows:
                    self.positions[row["projection"]] = max(
                        self.positions.get(row["projection"], 0), row["position"]
                    )
                if len(rows) == len(self.names):
                    return
            if time.perf_counter() > deadline:
                raise TimeoutError(f"the projector made no {TRACKING} rows in time")
            await asyncio.sleep(SAMPLE_INTERVAL_SECONDS)

    def tracked(self) -> int:
        """How far every read model got: the least of their positions."""
        return min((self.positions.get(n, 0) for n in self.names), default=0)

    async def head(self) -> int:
        head = await self.conn.fetchval(f"SELECT max(notification_id) FROM {self.events_table}")
        return int(head or 0)

    def _projected(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        name, _, position = payload.rpartition(":")
        if name in self.names:
            self.positions[name] = max(self.positions.get(name, 0), int(position))
        self._settle(time.perf_counter())

    def _settle(self, now: float) -> None:
        tracked = self.tracked()
        while self.pending and self.pending[0][1] <= tracked:
            sampled_at, _ = self.pending.pop(0)
            self.lags_ms.append((now - sampled_at) * 1000)

    async def sample_until(self, done: asyncio.Event) -> None:
        """A sample every SAMPLE_INTERVAL_SECONDS until `done` (a bounded flood sets it)."""
        while not done.is_set():
            sampled_at = time.perf_counter()
            self.pending.append((sampled_at, await self.head()))
            self._settle(time.perf_counter())
            next_at = sampled_at + SAMPLE_INTERVAL_SECONDS
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def reached(self, head: int, timeout_seconds: float) -> None:
        deadline = time.perf_counter() + timeout_seconds
        while self.tracked() < head:
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"projector at {self.tracked()} of {head} after {timeout_seconds:.0f} s"
                )
            await asyncio.sleep(SAMPLE_INTERVAL_SECONDS)

    async def stop(self) -> None:
        await self.conn.remove_listener(PROJECTED_CHANNEL, self._projected)


async def projection_lag_rows(settings: Settings) -> list[BenchRow]:
    events_table = await asyncio.to_thread(_events_table, settings)
    names = list(build_projections(load_catalog(CATALOG_PATH)))
    ledger = start_ledger(settings, FIRST_LEDGER_INSTANCE_ID)
    projector = start_runnable(settings, "projector", "projector")
    meter = CpuMeter({"projector": lambda: [projector.pid], "ledger": lambda: [ledger.pid]})
    producer = acknowledged_producer(settings, "credits-bench")
    replies = Replies(settings)
    topic = settings.topic(Topic.COMMANDS)
    conn = await asyncpg.connect(settings.pg_dsn())
    sampler = LagSampler(conn, events_table, names)
    try:
        await producer.start()
        await replies.start()
        await flood(producer, replies, topic, ["acct-0"] * 10, "lag-warm")
        await sampler.start()
        await sampler.reached(await sampler.head(), CATCH_UP_TIMEOUT_SECONDS)
        done = asyncio.Event()
        meter.start()
        sampling = asyncio.create_task(sampler.sample_until(done))
        try:
            rate = await flood(
                producer, replies, topic, zipf_accounts(THROUGHPUT_COMMANDS, seed=3), "lag"
            )
        finally:
            done.set()
            await sampling
        last_head = sampler.pending[-1][1] if sampler.pending else 0
        await sampler.reached(last_head, DRAIN_TIMEOUT_SECONDS)
        used = meter.stop()
        await sampler.stop()
    finally:
        await conn.close()
        await replies.stop()
        await producer.stop()
        projector.stop()
        ledger.stop()
    lags = sorted(sampler.lags_ms)
    return [
        BenchRow(
            "projection lag p99 during a flood",
            percentile(lags, 0.99),
            "ms",
            f"p50 {percentile(lags, 0.50):.1f} ms, max {lags[-1]:.1f} ms over {len(lags)} samples "
            f"every {SAMPLE_INTERVAL_SECONDS * 1000:.0f} ms; {THROUGHPUT_COMMANDS:,} commands, "
            f"{ACCOUNTS:,} accounts, Zipf({ZIPF_EXPONENT}) at {rate:,.0f}/s; "
            f"{len(names)} read models",
        ),
        BenchRow(
            "CPU per command, projection flood: projector",
            used["projector"] * 1e6 / THROUGHPUT_COMMANDS,
            "µs",
            f"{used['projector']:.2f} CPU-s over {THROUGHPUT_COMMANDS:,} commands (/proc); "
            f"ledger {used['ledger'] * 1e6 / THROUGHPUT_COMMANDS:.0f} µs beside it",
        ),
    ]
