"""Outages heal by themselves: PostgreSQL stopped (`pg_ctl stop -m immediate`) for 20 s and for
90 s, and the Kafka broker killed for 30 s, under steady load, with the ledger, relay, projector
and scheduler each running as `credits run X`.

After each outage every component is back without a restart of its process; afterwards the
relay has published every event exactly once (after dedupe by id) in order per account, every
read model equals the fold of the events, and the scheduler sent expiries after each outage.
The seconds each component took to recover are printed in the run's summary (not asserted:
speed is for the closing note, not for a test on a shared machine).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError

from infra.kafka_topics import delete_topics
from infra.settings import Topic
from tests.databases import fresh_database
from tests.faults.outage_checks import (
    check_read_models,
    check_relay,
    follower_positions,
    projection_positions,
    read_topic,
    scheduler_expiries,
    stored_events,
)
from tests.faults.outage_run import (
    PROCESSES,
    RECOVER_TIMEOUT_SECONDS,
    WATCHED,
    Outage,
    OutageRun,
    eventually_async,
)
from tests.faults.private_stack import PrivateStack

pytestmark = [pytest.mark.faults, pytest.mark.integration]

# An outage may not make a component log more than this: a line per state change and per
# retry helper transition, not one per attempt (an 80 s outage used to fill the log).
MAX_LOG_LINES_PER_OUTAGE = 20


@pytest.fixture
async def outage_run(private_stack: PrivateStack, tmp_path: Path) -> AsyncIterator[OutageRun]:
    run = OutageRun(private_stack, tmp_path)
    with fresh_database(private_stack.settings, run.settings.pg_database):
        try:
            await run.start()
            yield run
        finally:
            for process in run.processes.values():
                process.kill()
            # The private broker keeps its data between runs: its topics must not pile up.
            with contextlib.suppress(KafkaError, OSError):
                await delete_topics(run.settings, run.settings.all_topics())


async def test_postgres_stopped_for_20_then_90_seconds(
    outage_run: OutageRun, fault_report: list[str]
) -> None:
    for seconds in (20, 90):
        outage = await outage_run.postgres_outage(seconds)
        fault_report.append(outage.describe())
        _assert_recovered_in_place(outage_run, outage)
    await _assert_consistent_afterwards(outage_run, fault_report)


async def test_kafka_killed_for_30_seconds(outage_run: OutageRun, fault_report: list[str]) -> None:
    outage = await outage_run.kafka_outage(30)
    fault_report.append(outage.describe())
    _assert_recovered_in_place(outage_run, outage)
    await _assert_consistent_afterwards(outage_run, fault_report)


def _assert_recovered_in_place(run: OutageRun, outage: Outage) -> None:
    for name in PROCESSES:
        process = run.processes[name]
        assert process.running(), f"{name} ended during the {outage.name} outage"
    for name in WATCHED:
        lines = run.processes[name].lines()
        # The runner starts a component again if it ends on an outage error: these must not.
        restarts = [line for line in lines if "ended on an outage error" in str(line.fields)]
        assert not restarts, f"{name} ended and was started again: {restarts[0].fields}"
        assert outage.log_lines[name] <= MAX_LOG_LINES_PER_OUTAGE, (
            f"{name} logged {outage.log_lines[name]} lines in the {outage.name} outage"
        )
    # Each of them uses PostgreSQL all the time; Kafka only the relay and the scheduler.
    affected = WATCHED if outage.kind == "PostgreSQL" else ("relay", "scheduler")
    for name in affected:
        assert outage.recovered[name] is not None, f"{name}: nothing of the {outage.name} outage"


async def _assert_consistent_afterwards(run: OutageRun, fault_report: list[str]) -> None:
    await run.settle()
    head = (await asyncio.to_thread(stored_events, run.settings)).head

    async def caught_up() -> bool:
        followers = await asyncio.to_thread(follower_positions, run.settings)
        projections = await projection_positions(run.settings)
        return all(p == head for p in [*followers.values(), *projections.values()])

    await eventually_async(
        caught_up, "relay, scheduler and projector caught up", RECOVER_TIMEOUT_SECONDS
    )
    stored = await asyncio.to_thread(stored_events, run.settings)
    assert stored.head == head, "nothing was written after the ledger stopped"
    relay = await check_relay(run.settings, stored)
    read_models = await check_read_models(run.settings)
    commands = await read_topic(run.settings, run.settings.topic(Topic.COMMANDS))
    expiries = scheduler_expiries(commands)
    for outage in run.outages:
        after = [at for at in expiries if at >= outage.back_at]
        assert after, f"the scheduler sent no expiry after the {outage.name} outage"
    for name in WATCHED:
        assert run.processes[name].running(), f"{name} ended"
    events = sum(map(len, stored.by_account.values()))
    fault_report.append(
        f"  {events} events stored; relay: {relay.published} records, {relay.distinct} "
        f"distinct, every one once in order; read models equal to the fold: "
        f"{', '.join(read_models)}; scheduler: {len(expiries)} expiries sent"
    )
