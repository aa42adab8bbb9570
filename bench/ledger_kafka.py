"""End to end through Kafka: consume commands produced to `credits.commands` → replies received.

The ledger runs as its own process (`credits run ledger`), as in production; this process only
produces commands and reads replies, timing each by its correlation id.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.proc_cpu import CpuMeter, kafka_broker_pids, peak_rss_bytes, postgres_backend_pids
from bench.rows import BenchRow, percentile
from domain.catalog import load_catalog
from infra.event_store.env import event_store_env
from infra.kafka_clients import acknowledged_producer
from infra.kafka_clients import consumer as kafka_consumer
from infra.kafka_topics import partition_counts
from infra.ledger_application import LedgerApplication
from infra.settings import PROJECT_DIR, Settings, Topic
from services.ledger.service import LedgerService, SystemClock
from tests.kit.ports import free_port

CATALOG_PATH = Path(__file__).with_name("catalog.toml")
ACCOUNTS = 10_000
ZIPF_EXPONENT = 1.1
THROUGHPUT_COMMANDS = 20_000
HOT_ACCOUNT_COMMANDS = 5_000
# The latency phase's steady rate: a setting, so a run can compare rates (README).
FIXED_RATE_PER_SECOND = int(os.environ.get("CREDITS_BENCH_RATE_PER_SECOND", "1000"))
FIXED_RATE_SECONDS = 10
REPLY_TIMEOUT_SECONDS = 180.0


def _consume(account_id: str, command_id: str) -> bytes:
    return json.dumps(
        {"type": "consume", "command_id": command_id, "account_id": account_id, "action": "call"}
    ).encode()


def open_accounts(settings: Settings) -> None:
    """Opens the accounts straight through the service: set-up, not what is measured."""
    app = LedgerApplication(env={**event_store_env(settings), "AGGREGATE_CACHE_MAXSIZE": "0"})
    service = LedgerService(app, load_catalog(CATALOG_PATH), SystemClock())
    names = [f"acct-{n}" for n in range(ACCOUNTS)] + ["hot"]
    for start in range(0, len(names), 1000):
        replies = service.handle_many(
            [
                {
                    "type": "open_account",
                    "command_id": f"open-{n}",
                    "account_id": n,
                    "plan": "bench",
                }
                for n in names[start : start + 1000]
            ]
        )
        assert {r.status for r in replies} == {"accepted"}, replies[0]
    app.close()


class Replies:
    """Reads every reply from the end of the topic on; notes when each correlation id came."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self.settings = settings
        self.topic = topic or settings.topic(Topic.REPLIES)
        self.received_at: dict[str, float] = {}
        # Replies per correlation id: a phase that checks "exactly one each" reads it.
        self.counts: Counter[str] = Counter()
        self.statuses: dict[str, int] = {}
        self._consumer = kafka_consumer(settings, client_id="credits-bench", group_id=None)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        counts = await partition_counts(self.settings, [self.topic])
        partitions = [TopicPartition(self.topic, p) for p in range(counts[self.topic])]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    correlation_id = dict(record.headers).get("correlation_id", b"").decode()
                    self.received_at.setdefault(correlation_id, now)
                    self.counts[correlation_id] += 1
                    status = json.loads(record.value or b"{}").get("status", "?")
                    self.statuses[status] = self.statuses.get(status, 0) + 1

    async def wait_for(self, correlation_ids: list[str]) -> None:
        deadline = time.perf_counter() + REPLY_TIMEOUT_SECONDS
        while any(c not in self.received_at for c in correlation_ids):
            if time.perf_counter() > deadline:
                missing = sum(c not in self.received_at for c in correlation_ids)
                raise TimeoutError(f"{missing} replies missing after {REPLY_TIMEOUT_SECONDS}s")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()


async def _send(
    producer: AIOKafkaProducer, topic: str, account_id: str, command_id: str
) -> asyncio.Future[Any]:
    return await producer.send(
        topic,
        value=_consume(account_id, command_id),
        key=account_id.encode(),
        headers=[("correlation_id", command_id.encode())],
    )


async def flood(
    producer: AIOKafkaProducer, replies: Replies, topic: str, accounts: list[str], label: str
) -> float:
    """Sends as fast as the producer takes them; commands per second until the last reply."""
    ids = [f"{label}-{n}" for n in range(len(accounts))]
    started = time.perf_counter()
    futures = [await _send(producer, topic, a, c) for a, c in zip(accounts, ids, strict=True)]
    await asyncio.gather(*futures)
    await replies.wait_for(ids)
    return len(ids) / (max(replies.received_at[c] for c in ids) - started)


async def fixed_rate(
    producer: AIOKafkaProducer, replies: Replies, topic: str, accounts: list[str]
) -> list[float]:
    """Sends at a steady rate; returns each command's send → reply time in milliseconds."""
    sent_at: dict[str, float] = {}
    started = time.perf_counter()
    futures = []
    for n, account_id in enumerate(accounts):
        due = started + n / FIXED_RATE_PER_SECOND
        pause = due - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
        command_id = f"rate-{n}"
        sent_at[command_id] = time.perf_counter()
        futures.append(await _send(producer, topic, account_id, command_id))
    await asyncio.gather(*futures)
    await replies.wait_for(list(sent_at))
    return sorted((replies.received_at[c] - t) * 1000 for c, t in sent_at.items())


def zipf_accounts(count: int, seed: int) -> list[str]:
    weights = list(itertools.accumulate(1 / (k**ZIPF_EXPONENT) for k in range(1, ACCOUNTS + 1)))
    picks = random.Random(seed).choices(range(ACCOUNTS), cum_weights=weights, k=count)
    return [f"acct-{n}" for n in picks]


# The ledger of the phases with one ledger; a second ledger joins under another id
# (bench/two_ledgers.py). Explicit, so no run depends on the host's name (the default).
FIRST_LEDGER_INSTANCE_ID = "bench-ledger-1"
STOP_TIMEOUT_SECONDS = 60
METRICS_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Started:
    """A `credits run` process the benchmark started, and the ops port it serves."""

    name: str
    process: subprocess.Popen[bytes]
    ops_port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    async def batches(self) -> Batches:
        """How many batches (one transaction each) this ledger has applied, and their records:
        its `credits_ledger_batch_records` histogram."""
        async with httpx.AsyncClient(timeout=METRICS_TIMEOUT_SECONDS) as client:
            response = await client.get(f"http://127.0.0.1:{self.ops_port}/metrics")
        response.raise_for_status()
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }
        return Batches(
            int(samples.get("credits_ledger_batch_records_count", 0)),
            int(samples.get("credits_ledger_batch_records_sum", 0)),
        )

    def stop(self) -> None:
        """SIGTERM, then its exit: a process that does not exit 0 fails the benchmark."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            raise RuntimeError(f"{self.name} did not exit in {STOP_TIMEOUT_SECONDS} s") from None
        if code != 0:
            raise RuntimeError(f"{self.name} exited {code}")


@dataclass(frozen=True)
class Batches:
    count: int
    records: int

    def mean_since(self, before: Batches) -> float:
        """Records per batch between two readings."""
        return (self.records - before.records) / max(self.count - before.count, 1)


def start_runnable(
    settings: Settings, runnable: str, name: str, env: dict[str, str] | None = None
) -> Started:
    """`credits run RUNNABLE` as a process of its own on the bench's database and topics."""
    ops_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", runnable],
        env={
            **os.environ,
            "CREDITS_PG_DATABASE": settings.pg_database,
            "CREDITS_TOPIC_PREFIX": settings.topic_prefix,
            "CREDITS_CATALOG_PATH": str(CATALOG_PATH),
            "CREDITS_LOG_LEVEL": "WARNING",
            # Each process serves its own ops port: several run side by side.
            "CREDITS_OPS_PORT": str(ops_port),
            **(env or {}),
        },
        cwd=PROJECT_DIR,
    )
    return Started(name, process, ops_port)


def start_ledger(settings: Settings, instance_id: str) -> Started:
    return start_runnable(
        settings, "ledger", f"ledger {instance_id}", {"CREDITS_LEDGER_INSTANCE_ID": instance_id}
    )


def _meter(settings: Settings, ledger_pid: int) -> CpuMeter:
    return CpuMeter(
        {
            "ledger": lambda: [ledger_pid],
            "Kafka broker": kafka_broker_pids,
            "PostgreSQL backends": lambda: postgres_backend_pids(settings.pg_database),
            "load generator": lambda: [os.getpid()],
        }
    )


# The ledger's CPU per consume command over the Zipf flood (the other processes: no target).
LEDGER_CPU_TARGET = "≤ 90"


def _cpu_rows(phase: str, used_seconds: dict[str, float], commands: int) -> list[BenchRow]:
    return [
        BenchRow(
            f"CPU per command, {phase}: {name}",
            seconds * 1e6 / commands,
            "µs",
            f"{seconds:.2f} CPU-s over {commands:,} commands (/proc)",
            LEDGER_CPU_TARGET if name == "ledger" and phase == "Zipf flood" else "",
        )
        for name, seconds in used_seconds.items()
    ]


async def ledger_rows(settings: Settings) -> list[BenchRow]:
    await asyncio.to_thread(open_accounts, settings)
    ledger = start_ledger(settings, FIRST_LEDGER_INSTANCE_ID)
    meter = _meter(settings, ledger.pid)
    # As a producer service using our client would send (services/client).
    producer = acknowledged_producer(settings, "credits-bench")
    replies = Replies(settings)
    topic = settings.topic(Topic.COMMANDS)
    try:
        await producer.start()
        await replies.start()
        # Warm-up: the ledger has joined its group and answers.
        await flood(producer, replies, topic, ["acct-0"] * 10, "warm")
        batches_before = await ledger.batches()
        meter.start()
        zipf = await flood(
            producer, replies, topic, zipf_accounts(THROUGHPUT_COMMANDS, seed=1), "zipf"
        )
        zipf_cpu = meter.stop()
        zipf_batch_records = (await ledger.batches()).mean_since(batches_before)
        meter.start()
        hot = await flood(producer, replies, topic, ["hot"] * HOT_ACCOUNT_COMMANDS, "hot")
        hot_cpu = meter.stop()
        # The floods left ~100 MB of written pages for the kernel to flush, which it does ~30 s
        # later, right under the next phase's commits (their fsync waits behind it). Flushed
        # now, the latency is that of a steady rate, not of the seconds after a burst.
        await asyncio.to_thread(os.sync)
        meter.start()
        latencies_ms = await fixed_rate(
            producer,
            replies,
            topic,
            zipf_accounts(FIXED_RATE_PER_SECOND * FIXED_RATE_SECONDS, seed=2),
        )
        rate_cpu = meter.stop()
        ledger_peak_rss = peak_rss_bytes(ledger.pid)
    finally:
        await replies.stop()
        await producer.stop()
        ledger.stop()
    accepted = replies.statuses.get("accepted", 0)
    total = sum(replies.statuses.values())
    return [
        BenchRow(
            f"end to end: consume, {ACCOUNTS:,} accounts, Zipf({ZIPF_EXPONENT})",
            zipf,
            "commands/s",
            f"{THROUGHPUT_COMMANDS:,} commands through Kafka, ledger in its own process; "
            f"{zipf_batch_records:.0f} records per batch (one transaction each)",
            "≥ 7,000",
        ),
        *_cpu_rows("Zipf flood", zipf_cpu, THROUGHPUT_COMMANDS),
        BenchRow(
            "end to end: consume, one hot account",
            hot,
            "commands/s",
            f"{HOT_ACCOUNT_COMMANDS:,} commands",
            "≥ 7,000",
        ),
        BenchRow(
            "CPU per command, hot account: ledger",
            hot_cpu["ledger"] * 1e6 / HOT_ACCOUNT_COMMANDS,
            "µs",
            "(/proc)",
        ),
        BenchRow(
            f"command → reply latency p50 at {FIXED_RATE_PER_SECOND}/s",
            percentile(latencies_ms, 0.50),
            "ms",
            f"{len(latencies_ms):,} commands over {FIXED_RATE_SECONDS} s",
            "≤ 5",
        ),
        BenchRow(
            f"command → reply latency p99 at {FIXED_RATE_PER_SECOND}/s",
            percentile(latencies_ms, 0.99),
            "ms",
            f"max {latencies_ms[-1]:.1f} ms; {accepted:,} of {total:,} replies accepted",
            "≤ 20",
        ),
        *_cpu_rows(f"{FIXED_RATE_PER_SECOND}/s", rate_cpu, len(latencies_ms)),
        BenchRow("ledger peak RSS", ledger_peak_rss / 2**20, "MiB", "VmHWM of the ledger process"),
    ]
