"""Two ledger processes in one consumer group: the Zipf flood's rate when the partitions are split.

Both ledgers are started for this phase alone, after the ledger's own phases (so the one-ledger
rows never include a second ledger's CPU), under distinct `CREDITS_LEDGER_INSTANCE_ID`s and ops
ports. The flood starts once the group has settled: the coordinator says it is Stable with both
members holding partitions, and a probe command on every partition has been answered. Every
command must get exactly one reply (counted per correlation id, until both ledgers have stopped
cleanly): anything else fails the benchmark.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from credits_client.partitioning import partition_for

from bench.ledger_kafka import (
    ACCOUNTS,
    FIRST_LEDGER_INSTANCE_ID,
    THROUGHPUT_COMMANDS,
    ZIPF_EXPONENT,
    Replies,
    Started,
    flood,
    start_ledger,
    zipf_accounts,
)
from bench.proc_cpu import CpuMeter
from bench.rows import BenchRow
from infra.kafka_clients import acknowledged_producer, kafka_admin
from infra.settings import Settings, Topic
from services.ledger.consumer import CONSUMER_GROUP

SECOND_LEDGER_INSTANCE_ID = "bench-ledger-2"
INSTANCE_IDS = (FIRST_LEDGER_INSTANCE_ID, SECOND_LEDGER_INSTANCE_ID)
SETTLE_TIMEOUT_SECONDS = 60.0
SETTLE_POLL_SECONDS = 0.25
# After both ledgers stopped, a reply sent twice (a redelivery at the rebalance) has this long
# to show up before the count per correlation id is checked.
LATE_REPLY_SECONDS = 1.0


async def group_split(settings: Settings) -> dict[str, list[int]] | None:
    """Partitions of the commands topic per ledger instance id, once the group is Stable with
    every member holding some; None while a rebalance is in progress."""
    group = f"{settings.topic_prefix}{CONSUMER_GROUP}"
    topic = settings.topic(Topic.COMMANDS)
    async with kafka_admin(settings) as admin:
        responses = await admin.describe_consumer_groups([group])
    described = [g for r in responses for g in r.to_object()["groups"]]
    if len(described) != 1 or described[0]["state"] != "Stable":
        return None
    split: dict[str, list[int]] = {}
    for member in described[0]["members"]:
        if not member["member_assignment"]:
            return None
        assignment = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
        # A static member's id is its `group.instance.id`, a dash and a UUID (Kafka's coordinator).
        instance = next(
            (i for i in INSTANCE_IDS if member["member_id"].startswith(f"{i}-")),
            member["member_id"],
        )
        partitions = assignment.partitions()
        split[instance] = sorted(tp.partition for tp in partitions if tp.topic == topic)
    return split if all(split.get(i) for i in INSTANCE_IDS) and len(split) == 2 else None


async def _settled(settings: Settings) -> dict[str, list[int]]:
    deadline = time.perf_counter() + SETTLE_TIMEOUT_SECONDS
    while (split := await group_split(settings)) is None:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"the ledgers' group did not settle in {SETTLE_TIMEOUT_SECONDS} s")
        await asyncio.sleep(SETTLE_POLL_SECONDS)
    return split


def _probe_accounts(partitions: int) -> list[str]:
    """One opened account per partition of the commands topic (the key decides it)."""
    found: dict[int, str] = {}
    for n in range(ACCOUNTS):
        found.setdefault(partition_for(f"acct-{n}", partitions), f"acct-{n}")
        if len(found) == partitions:
            return list(found.values())
    raise AssertionError("no opened account for every partition")


def _pid_of(started: Started) -> Callable[[], list[int]]:
    return lambda: [started.pid]


async def two_ledger_rows(settings: Settings) -> list[BenchRow]:
    ledgers = [start_ledger(settings, i) for i in INSTANCE_IDS]
    meter = CpuMeter({i: _pid_of(ledger) for i, ledger in zip(INSTANCE_IDS, ledgers, strict=True)})
    producer = acknowledged_producer(settings, "credits-bench")
    replies = Replies(settings)
    topic = settings.topic(Topic.COMMANDS)
    try:
        await producer.start()
        await replies.start()
        split = await _settled(settings)
        probes = _probe_accounts(settings.topic_partitions)
        await flood(producer, replies, topic, probes, "pair-probe")
        if await group_split(settings) != split:
            raise RuntimeError("the group rebalanced while it was probed: not settled")
        before = [await ledger.batches() for ledger in ledgers]
        meter.start()
        accounts = zipf_accounts(THROUGHPUT_COMMANDS, seed=4)
        rate = await flood(producer, replies, topic, accounts, "pair")
        used = meter.stop()
        after = [await ledger.batches() for ledger in ledgers]
        split_after = await group_split(settings)
        for ledger in reversed(ledgers):
            ledger.stop()
        await asyncio.sleep(LATE_REPLY_SECONDS)
    finally:
        await replies.stop()
        await producer.stop()
        for ledger in reversed(ledgers):
            if ledger.process.poll() is None:
                ledger.stop()
    ids = [f"pair-{n}" for n in range(THROUGHPUT_COMMANDS)]
    once = sum(replies.counts[c] == 1 for c in ids)
    if once != len(ids):
        twice = sum(replies.counts[c] > 1 for c in ids)
        raise AssertionError(
            f"two ledgers: {once:,} of {len(ids):,} commands got exactly one reply "
            f"({twice:,} more than one, {len(ids) - once - twice:,} none)"
        )
    if split_after != split:
        raise RuntimeError(f"the group rebalanced during the flood: {split} then {split_after}")
    partition_of = {a: partition_for(a, settings.topic_partitions) for a in set(accounts)}
    handled = {i: sum(partition_of[a] in split[i] for a in accounts) for i in INSTANCE_IDS}
    shares = "; ".join(
        f"{i}: partitions {','.join(map(str, split[i]))}, {handled[i]:,} commands, "
        f"{used[i] * 1e6 / max(handled[i], 1):.0f} µs CPU per command it applied, "
        f"{after[n].mean_since(before[n]):.0f} records per batch"
        for n, i in enumerate(INSTANCE_IDS)
    )
    return [
        BenchRow(
            "end to end: two ledgers in one consumer group",
            rate,
            "commands/s",
            f"{THROUGHPUT_COMMANDS:,} commands, {ACCOUNTS:,} accounts, Zipf({ZIPF_EXPONENT}); "
            f"{shares}; each command exactly one reply",
        )
    ]
