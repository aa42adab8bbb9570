"""The bare Kafka round trip, beside which the ledger's figures read as ratios.

produce → consume → produce → consume with the same client library (aiokafka), the same client
settings (`infra/kafka_clients.py`) and the same load as the ledger's phases: an echo process
(`python -m bench.kafka_roundtrip`) reads each record of a topic and sends it on to another, as
the ledger would answer a command with no database and no decision in between. What the ledger
adds to a command → reply time is what it takes beyond this.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys

from aiokafka import TopicPartition

from bench.ledger_kafka import (
    FIXED_RATE_PER_SECOND,
    FIXED_RATE_SECONDS,
    THROUGHPUT_COMMANDS,
    Replies,
    fixed_rate,
    flood,
    zipf_accounts,
)
from bench.proc_cpu import cpu_seconds
from bench.rows import BenchRow, percentile
from infra.kafka_clients import acknowledged_producer
from infra.kafka_clients import consumer as kafka_consumer
from infra.kafka_topics import create_topics, delete_topics, partition_counts
from infra.settings import PROJECT_DIR, Settings

PING = "bench.ping"
PONG = "bench.pong"
# As the ledger polls: at most this many records at a time.
ECHO_BATCH_RECORDS = 500


async def echo(settings: Settings) -> None:
    """Sends every record of the ping topic on to the pong topic, until stopped."""
    ping, pong = settings.topic_prefix + PING, settings.topic_prefix + PONG
    # As the ledger's: no linger, every reply acknowledged by all in-sync replicas.
    producer = acknowledged_producer(settings, "credits-bench-echo", linger_ms=0)
    consumer = kafka_consumer(
        settings, client_id="credits-bench-echo", group_id=None, auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    counts = await partition_counts(settings, [ping])
    consumer.assign([TopicPartition(ping, p) for p in range(counts[ping])])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            polled = await consumer.getmany(timeout_ms=100, max_records=ECHO_BATCH_RECORDS)
            for records in polled.values():
                for record in records:
                    await producer.send(
                        pong, value=record.value, key=record.key, headers=list(record.headers)
                    )
    finally:
        await consumer.stop()
        await producer.stop()


def _start_echo(settings: Settings) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CREDITS_TOPIC_PREFIX": settings.topic_prefix}
    return subprocess.Popen(
        [sys.executable, "-m", "bench.kafka_roundtrip"], env=env, cwd=PROJECT_DIR
    )


async def roundtrip_rows(settings: Settings) -> list[BenchRow]:
    ping, pong = settings.topic_prefix + PING, settings.topic_prefix + PONG
    await create_topics(settings, [ping, pong])
    echoing = _start_echo(settings)
    producer = acknowledged_producer(settings, "credits-bench")
    replies = Replies(settings, pong)
    try:
        await producer.start()
        await replies.start()
        await flood(producer, replies, ping, ["acct-0"] * 10, "warm")
        echo_cpu = cpu_seconds(echoing.pid)
        rate = await flood(producer, replies, ping, zipf_accounts(THROUGHPUT_COMMANDS, 1), "zipf")
        echo_cpu = cpu_seconds(echoing.pid) - echo_cpu
        accounts = zipf_accounts(FIXED_RATE_PER_SECOND * FIXED_RATE_SECONDS, seed=2)
        latencies_ms = await fixed_rate(producer, replies, ping, accounts)
    finally:
        await replies.stop()
        await producer.stop()
        echoing.send_signal(signal.SIGTERM)
        echoing.wait(timeout=30)
        await delete_topics(settings, [ping, pong])
    note = "produce → consume → produce → consume, aiokafka, no database"
    return [
        BenchRow("bare Kafka round trip, flood", rate, "records/s", note),
        BenchRow(
            "CPU per record, bare Kafka round trip: echo",
            echo_cpu * 1e6 / THROUGHPUT_COMMANDS,
            "µs",
            "the echo process over the flood (/proc)",
        ),
        BenchRow(
            f"bare Kafka round trip p50 at {FIXED_RATE_PER_SECOND}/s",
            percentile(latencies_ms, 0.50),
            "ms",
            note,
        ),
        BenchRow(
            f"bare Kafka round trip p99 at {FIXED_RATE_PER_SECOND}/s",
            percentile(latencies_ms, 0.99),
            "ms",
            f"max {latencies_ms[-1]:.1f} ms",
        ),
    ]


if __name__ == "__main__":
    argparse.ArgumentParser(
        prog="python -m bench.kafka_roundtrip",
        description="The echo of the bare Kafka round trip (started by make bench): sends each "
        "record of <prefix>bench.ping on to <prefix>bench.pong until SIGTERM.",
    ).parse_args()
    asyncio.run(echo(Settings()))
