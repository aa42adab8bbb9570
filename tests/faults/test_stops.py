"""Every component stops within 10 s of SIGTERM during a Kafka outage.

One `credits run X` process per entry of the runner's component table, plus `all`: a component
added to the table is covered without editing this test. They start with the private stack up,
the broker is then killed, and each is sent SIGTERM in turn while the outage lasts (so the
later ones have been retrying for longer). The runner bounds the stop whatever a component
does (services/cli/supervisor.py); the summary says which processes needed its hard stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError

from infra.kafka_topics import create_topics, delete_topics
from services.cli.supervisor import COMPONENTS, HARD_STOP_EXIT_STATUS
from tests.databases import fresh_database
from tests.faults.command_load import CommandLoad
from tests.faults.component_process import ComponentProcess
from tests.faults.outage_run import RECOVER_TIMEOUT_SECONDS, eventually
from tests.faults.private_stack import PrivateStack
from tests.kit.ports import free_port

pytestmark = [pytest.mark.faults, pytest.mark.integration]

RUNS = [*COMPONENTS, "all"]
STOP_BOUND_SECONDS = 10.0
# Long enough for every process to connect before the broker goes, and to be retrying after.
CONNECT_SECONDS = 5.0
RETRYING_SECONDS = 5.0


@pytest.fixture(scope="module")
def stop_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stops")


@pytest.fixture(scope="module")
def stop_database(private_stack: PrivateStack) -> Iterator[PrivateStack]:
    """A database of this module's own, on the private stack (dropped at the end)."""
    name = f"credits_stops_{uuid.uuid4().hex[:8]}"
    stack = PrivateStack(private_stack.settings.model_copy(update={"pg_database": name}))
    with fresh_database(private_stack.settings, name):
        yield stack


@pytest.fixture(scope="module")
async def during_kafka_outage(
    stop_database: PrivateStack, stop_log_dir: Path
) -> AsyncIterator[dict[str, ComponentProcess]]:
    """One process per run, started with the stack up; yielded once the broker is killed."""
    settings = stop_database.settings.model_copy(
        update={"topic_prefix": f"stops-{uuid.uuid4().hex[:8]}."}
    )
    await create_topics(settings)
    processes = {
        run: ComponentProcess(
            run,
            settings.model_copy(update={"http_port": free_port(), "ops_port": free_port()}),
            stop_log_dir,
        )
        for run in RUNS
    }
    load = CommandLoad(settings, f"stops-{uuid.uuid4().hex[:8]}")
    try:
        await eventually(
            lambda: all(_started(process) for process in processes.values()),
            "every process started",
            RECOVER_TIMEOUT_SECONDS,
            processes.values(),
        )
        # Commands up to the kill: the ledgers have replies on their way when the broker goes.
        await load.start()
        await asyncio.sleep(CONNECT_SECONDS)
        await asyncio.to_thread(stop_database.kill_kafka)
        await load.stop()
        await asyncio.sleep(RETRYING_SECONDS)
        yield processes
    finally:
        for process in processes.values():
            process.kill()
        await asyncio.to_thread(stop_database.start_kafka)
        # The private broker keeps its data between runs: its topics must not pile up.
        with contextlib.suppress(KafkaError, OSError):
            await delete_topics(settings, settings.all_topics())


@pytest.mark.parametrize("run", RUNS)
async def test_stops_within_10_seconds_of_sigterm_during_a_kafka_outage(
    run: str, during_kafka_outage: dict[str, ComponentProcess], fault_report: list[str]
) -> None:
    process = during_kafka_outage[run]
    assert process.running(), f"`credits run {run}` ended in the outage:\n{process.text()[-3000:]}"
    started = time.monotonic()

    seconds, status = await asyncio.to_thread(process.terminate, STOP_BOUND_SECONDS)

    assert status is not None, (
        f"`credits run {run}` still running {STOP_BOUND_SECONDS} s after SIGTERM"
    )
    lines = process.lines()
    late = sorted(
        str(line.fields.get("component"))
        for line in lines
        if line.event == "cancelling a component that did not stop in time"
    )
    hard = [line.fields for line in lines if line.event == "ending the process"]
    note = ""
    if late:
        note += f"; cancelled after the grace: {', '.join(late)}"
    if hard:
        note += f"; hard stop, still running: {hard[0].get('running')} {hard[0].get('threads')}"
    fault_report.append(
        f"SIGTERM in a Kafka outage: credits run {run}: stopped in {seconds:.1f} s, "
        f"exit status {status}{note}"
    )
    assert status in (0, HARD_STOP_EXIT_STATUS), process.text()[-3000:]
    assert time.monotonic() - started < STOP_BOUND_SECONDS + 1


def _started(process: ComponentProcess) -> bool:
    return any(line.event == "starting" for line in process.lines())
