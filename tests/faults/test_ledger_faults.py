"""The ledger process under steady load while its servers fail, on a private PostgreSQL and Kafka.

Each test runs `credits run ledger` as its own process and sends consumes at a steady rate;
a command counts once Kafka acknowledged it. Whatever happens (kill -9 of the ledger, PostgreSQL
stopped with `pg_ctl stop -m immediate`, the broker killed), every acknowledged command must be
answered and applied exactly once, by the same ledger process when a server failed (no restart).
A ledger told to stop (SIGTERM) during an outage stops within 10 s. The figures (recovery
seconds, longest silence) are printed for the record; speed is asserted by nothing here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from infra.kafka_topics import create_topics
from infra.settings import Settings
from tests.databases import fresh_database
from tests.faults.ledger_load import SteadyLoad, check_exactly_once, open_accounts
from tests.faults.private_stack import LOCAL_DIR, PrivateStack
from tests.ledger_process import LedgerProcess

pytestmark = pytest.mark.faults

RATE_PER_SECOND = 25.0
ACCOUNTS = 16
# A stop, whatever the ledger is doing, takes at most this (the requirement, not a speed goal).
STOP_SECONDS = 10.0
# The ledger's log lines when its readiness changes (services/ledger/health.py).
READINESS_EVENTS = {"ready", "not ready"}


@pytest.fixture
def fault_settings(private_stack: PrivateStack) -> Iterator[Settings]:
    """A database and topics of this test's own on the private servers."""
    run = uuid.uuid4().hex[:8]
    own = private_stack.settings.model_copy(
        update={"pg_database": f"credits_fault_{run}", "topic_prefix": f"fault-{run}."}
    )
    private_stack.start_postgres()  # an earlier test may have left it stopped
    private_stack.start_kafka()
    with fresh_database(private_stack.settings, own.pg_database):
        asyncio.run(create_topics(own))
        yield own
        private_stack.start_postgres()  # for the drop


@pytest.fixture
async def loaded_ledger(
    fault_settings: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[LedgerProcess, SteadyLoad]]:
    accounts = [f"acct-{n}" for n in range(ACCOUNTS)]
    await asyncio.to_thread(open_accounts, fault_settings, accounts)
    log_path = LOCAL_DIR / f"{request.node.name}-{uuid.uuid4().hex[:6]}.log"
    ledger = LedgerProcess(fault_settings, log_path, instance_id="fault-ledger")
    ledger.start()
    load = SteadyLoad(fault_settings, accounts, RATE_PER_SECOND)
    await load.start()
    await _first_answer(load)
    yield ledger, load
    await load.close()
    if ledger.alive():
        ledger.terminate(STOP_SECONDS)


async def _first_answer(load: SteadyLoad) -> None:
    async with asyncio.timeout(60):
        while not load.answered_at:
            await asyncio.sleep(0.1)


async def _finish(load: SteadyLoad, settings: Settings, what: str) -> None:
    await load.stop_sending()
    await load.wait_until_answered()
    outcome = await asyncio.to_thread(check_exactly_once, settings, load)
    print(f"\n{what}: {outcome}")
    assert outcome.lost == 0
    assert outcome.applied_twice == 0
    assert outcome.refused == 0


def _lines_between(ledger: LedgerProcess, levels: set[str]) -> int:
    return sum(1 for e in ledger.log_events() if e.get("level") in levels)


async def test_a_ledger_killed_three_times_under_load_loses_and_repeats_nothing(
    loaded_ledger: tuple[LedgerProcess, SteadyLoad], fault_settings: Settings
) -> None:
    ledger, load = loaded_ledger
    gaps = []
    for _ in range(3):
        await asyncio.sleep(3)  # answering under load
        killed_at = time.monotonic()
        ledger.kill()
        ledger.start()  # same instance id: it takes its partitions back at once
        await _first_answer_after(load, killed_at)
        gaps.append(load.longest_silence_seconds(killed_at - 1))
    await asyncio.sleep(3)
    await _finish(load, fault_settings, "kill -9 three times")
    print("longest time without a reply after each kill:", ", ".join(f"{g:.1f} s" for g in gaps))


@pytest.mark.parametrize("outage_seconds", [20, 90])
async def test_postgres_stopped_under_load_is_ridden_out_without_a_restart(
    loaded_ledger: tuple[LedgerProcess, SteadyLoad],
    fault_settings: Settings,
    private_stack: PrivateStack,
    outage_seconds: int,
) -> None:
    ledger, load = loaded_ledger
    pid = ledger.pid
    warnings_before = _lines_between(ledger, {"warning", "error"})
    private_stack.stop_postgres_immediately()
    await asyncio.sleep(outage_seconds)
    private_stack.start_postgres()
    back_at = time.monotonic()
    await _first_answer_after(load, back_at)
    print(f"\nPostgreSQL down {outage_seconds} s: first reply {_since(load, back_at):.1f} s after")
    await _finish(load, fault_settings, f"PostgreSQL down {outage_seconds} s")
    assert ledger.alive() and ledger.pid == pid
    changes = [e["event"] for e in ledger.log_events() if e.get("event") in READINESS_EVENTS]
    assert "not ready" in changes and changes[-1] == "ready", changes
    # One line when it starts failing and one when it is back, not one per attempt.
    ours = _lines_between(ledger, {"warning", "error"}) - warnings_before
    print(f"warning and error lines during the outage: {ours}")


async def test_kafka_killed_under_load_is_ridden_out_and_a_stop_meanwhile_is_prompt(
    loaded_ledger: tuple[LedgerProcess, SteadyLoad],
    fault_settings: Settings,
    private_stack: PrivateStack,
) -> None:
    ledger, load = loaded_ledger
    pid = ledger.pid
    other, other_load = await _second_ledger_under_load(fault_settings, "kafka")
    await asyncio.sleep(3)
    private_stack.kill_kafka()
    await asyncio.sleep(5)  # both ledgers wait for acknowledgements and retry by now
    stopped_in = other.terminate(STOP_SECONDS)
    print(f"\na ledger told to stop during the Kafka outage stopped in {stopped_in:.1f} s")
    await asyncio.sleep(25)
    private_stack.start_kafka()
    await other_load.close()  # its clients stop cleanly once the broker answers
    back_at = time.monotonic()
    await _first_answer_after(load, back_at)
    print(f"Kafka down 30 s: first reply {_since(load, back_at):.1f} s after it answered")
    await _finish(load, fault_settings, "Kafka down 30 s")
    assert ledger.alive() and ledger.pid == pid
    changes = [e["event"] for e in ledger.log_events() if e.get("event") in READINESS_EVENTS]
    assert "not ready" in changes[1:] and changes[-1] == "ready", changes


async def test_a_stop_during_a_postgres_outage_is_prompt(
    loaded_ledger: tuple[LedgerProcess, SteadyLoad],
    fault_settings: Settings,
    private_stack: PrivateStack,
) -> None:
    ledger, load = loaded_ledger
    private_stack.stop_postgres_immediately()
    await asyncio.sleep(5)  # retrying by now, a batch waiting on the database
    stopped_in = ledger.terminate(STOP_SECONDS)
    print(f"\na ledger told to stop during a PostgreSQL outage stopped in {stopped_in:.1f} s")
    assert ledger.process is not None and ledger.process.returncode == 0
    private_stack.start_postgres()
    ledger.start()  # what it had not answered, a restarted ledger answers
    await _finish(load, fault_settings, "stopped during a PostgreSQL outage, then restarted")


async def _second_ledger_under_load(
    settings: Settings, name: str
) -> tuple[LedgerProcess, SteadyLoad]:
    """A second ledger, of a deployment of its own (its own topics and group), answering."""
    own = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}{name}."})
    await create_topics(own)
    accounts = [f"{name}-{n}" for n in range(4)]
    await asyncio.to_thread(open_accounts, own, accounts)
    log_path = LOCAL_DIR / f"{name}-{uuid.uuid4().hex[:6]}.log"
    ledger = LedgerProcess(own, log_path, instance_id=name)
    ledger.start()
    load = SteadyLoad(own, accounts, RATE_PER_SECOND)
    await load.start()
    await _first_answer(load)
    return ledger, load


async def _first_answer_after(load: SteadyLoad, moment: float) -> None:
    async with asyncio.timeout(120):
        while not any(t >= moment for t in load.answered_at.values()):
            await asyncio.sleep(0.1)


def _since(load: SteadyLoad, moment: float) -> float:
    return load.first_answer_after(moment) - moment
