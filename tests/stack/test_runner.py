"""The runner stops every component on a signal and tells a failure from a cancelled stop."""

from __future__ import annotations

import asyncio
import os
import signal

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


@pytest.fixture
def components(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        runner,
        "COMPONENTS",
        {"clean": stops_cleanly, "cancelled": ends_cancelled, "failing": fails},
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
