"""The runner stops every component on a signal, in bounded time whatever a component does, tells
a failure from a cancelled stop, and starts again a component that ended on an outage error."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading

import pytest
from aiokafka.errors import KafkaConnectionError

from infra.settings import PROJECT_DIR, Settings
from services.cli import supervisor as runner
from tests.kit.ports import free_port


async def stops_cleanly(_: Settings, stop: asyncio.Event) -> None:
    await stop.wait()


async def ends_cancelled(_: Settings, stop: asyncio.Event) -> None:
    await stop.wait()
    raise asyncio.CancelledError  # as aiokafka's consumer.stop() may when the broker is gone


async def fails(_: Settings, stop: asyncio.Event) -> None:
    raise RuntimeError("boom")


# What the component on its own thread saw, and the handshake with one on the runner's loop.
seen: dict[str, object] = {}
blocking = threading.Event()
runner_loop_ran = threading.Event()


async def blocks_its_loop(_: Settings, stop: asyncio.Event) -> None:
    seen["thread"] = threading.get_ident()
    blocking.set()
    # Blocks this loop (as the ledger does while it applies a batch): only a component on
    # another loop can answer meanwhile.
    seen["answered while blocked"] = runner_loop_ran.wait(timeout=5)
    await stop.wait()
    seen["stopped"] = True


async def answers(_: Settings, stop: asyncio.Event) -> None:
    while not blocking.is_set():
        await asyncio.sleep(0.01)
    runner_loop_ran.set()
    await stop.wait()


async def on_own_thread(settings: Settings, stop: asyncio.Event) -> None:
    await runner._on_own_thread(blocks_its_loop, settings, stop, name="blocking")


async def fails_on_own_thread(settings: Settings, stop: asyncio.Event) -> None:
    await runner._on_own_thread(fails, settings, stop, name="failing")


@pytest.fixture
def components(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        runner,
        "COMPONENTS",
        {
            "clean": stops_cleanly,
            "cancelled": ends_cancelled,
            "failing": fails,
            "threaded": on_own_thread,
            "threaded_failing": fails_on_own_thread,
            "answers": answers,
        },
    )


@pytest.mark.usefixtures("components")
async def test_a_failing_component_stops_the_others_and_its_error_comes_out() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        await runner.run_components(["clean", "cancelled", "failing"], Settings(), ops=False)


@pytest.mark.usefixtures("components")
async def test_sigterm_stops_every_component_and_a_cancelled_stop_is_not_a_failure() -> None:
    before = signal.getsignal(signal.SIGTERM)
    asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)

    await asyncio.wait_for(runner.run_components(["clean", "cancelled"], Settings(), ops=False), 10)

    # The run's handlers are gone with it (the ones before are back): a later SIGTERM is not
    # swallowed by a stale one.
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.usefixtures("components")
async def test_a_component_on_its_own_thread_may_block_its_loop_and_still_stops() -> None:
    seen.clear()
    blocking.clear()
    runner_loop_ran.clear()
    asyncio.get_running_loop().call_later(0.5, os.kill, os.getpid(), signal.SIGTERM)

    await asyncio.wait_for(
        runner.run_components(["threaded", "answers"], Settings(), ops=False), 10
    )

    assert seen["thread"] != threading.get_ident()
    assert seen["answered while blocked"] is True
    assert seen["stopped"] is True


@pytest.mark.usefixtures("components")
async def test_a_failure_on_a_components_own_thread_comes_out() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(
            runner.run_components(["clean", "threaded_failing"], Settings(), ops=False), 10
        )


starts: dict[str, int] = {}


async def ignores_its_stop(_: Settings, stop: asyncio.Event) -> None:
    await asyncio.Event().wait()  # waits for something else than `stop`; a cancel ends it


async def loses_its_connection_twice(_: Settings, stop: asyncio.Event) -> None:
    starts["outage"] = starts.get("outage", 0) + 1
    if starts["outage"] <= 2:
        raise KafkaConnectionError("the broker went away")
    await stop.wait()


@pytest.fixture
def quick_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "SHUTDOWN_GRACE_SECONDS", 0.2)
    monkeypatch.setattr(runner, "CANCEL_GRACE_SECONDS", 0.2)
    monkeypatch.setitem(runner.COMPONENTS, "ignores", ignores_its_stop)
    monkeypatch.setitem(runner.COMPONENTS, "outage", loses_its_connection_twice)


@pytest.mark.usefixtures("components", "quick_grace")
async def test_a_component_that_ignores_its_stop_is_cancelled_after_the_grace() -> None:
    asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)

    await asyncio.wait_for(runner.run_components(["clean", "ignores"], Settings(), ops=False), 10)


@pytest.mark.usefixtures("components", "quick_grace")
async def test_a_component_ending_on_an_outage_error_is_started_again_and_the_rest_runs_on() -> (
    None
):
    starts.clear()
    seen_running: list[bool] = []

    async def sigterm_once_restarted() -> None:
        while starts.get("outage", 0) < 3:
            await asyncio.sleep(0.05)
        seen_running.append(True)
        os.kill(os.getpid(), signal.SIGTERM)

    asyncio.get_running_loop().create_task(sigterm_once_restarted())
    await asyncio.wait_for(runner.run_components(["clean", "outage"], Settings(), ops=False), 30)

    assert starts["outage"] == 3
    assert seen_running == [True], "the process ran on: only a signal stopped it"


# `credits run` in a process of its own, with a component that no stop or cancel can end.
STUCK_PROCESS = """
import asyncio, sys, time
from infra.settings import Settings
from services.cli import supervisor as runner

async def blocks_the_loop(settings, stop):
    print("blocking", flush=True)
    time.sleep(3600)  # on the event loop's own thread: nothing asyncio can do ends it

async def blocks_a_thread(settings, stop):
    print("blocking", flush=True)
    await asyncio.to_thread(time.sleep, 3600)  # cancelled, the thread still runs: exit waits

runner.COMPONENTS = {"loop": blocks_the_loop, "thread": blocks_a_thread}
runner.SHUTDOWN_GRACE_SECONDS = 0.5
runner.HARD_STOP_SECONDS = 1.5
sys.exit(runner.run_process([sys.argv[1]], Settings(ops_port=int(sys.argv[2]))))
"""


@pytest.mark.parametrize("stuck", ["loop", "thread"])
def test_credits_run_ends_even_when_a_component_cannot_be_stopped(stuck: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", STUCK_PROCESS, stuck, str(free_port())],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        # Then the component blocks: SIGTERM reaches it mid-block.
        lines = iter(process.stdout.readline, b"")
        assert any(line == b"blocking\n" for line in lines)
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert status == runner.HARD_STOP_EXIT_STATUS
    assert process.stdout is not None
    assert b"ending the process" in process.stdout.read()  # unconfigured structlog: stdout
