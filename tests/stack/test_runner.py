"""The runner stops every component on a signal and tells a failure from a cancelled stop."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from infra.settings import Settings
from services import runner


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
        await runner.run_components(["clean", "cancelled", "failing"], Settings())


@pytest.mark.usefixtures("components")
async def test_sigterm_stops_every_component_and_a_cancelled_stop_is_not_a_failure() -> None:
    asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)

    await asyncio.wait_for(runner.run_components(["clean", "cancelled"], Settings()), 10)

    # The handlers are gone with the run: a later SIGTERM is not swallowed by a stale one.
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)


@pytest.mark.usefixtures("components")
async def test_a_component_on_its_own_thread_may_block_its_loop_and_still_stops() -> None:
    seen.clear()
    blocking.clear()
    runner_loop_ran.clear()
    asyncio.get_running_loop().call_later(0.5, os.kill, os.getpid(), signal.SIGTERM)

    await asyncio.wait_for(runner.run_components(["threaded", "answers"], Settings()), 10)

    assert seen["thread"] != threading.get_ident()
    assert seen["answered while blocked"] is True
    assert seen["stopped"] is True


@pytest.mark.usefixtures("components")
async def test_a_failure_on_a_components_own_thread_comes_out() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(runner.run_components(["clean", "threaded_failing"], Settings()), 10)
