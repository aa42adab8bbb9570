"""One run of the outage tests: the private stack, a database and topics of the run's own, the
ledger, relay, projector and scheduler each as a `credits run` process, and steady load.

Outages are timed from the test's side: `down_at` when the server was taken down, `back_at`
when it first answered again (polled, not when its start script returned). A component's
seconds to recover are from `back_at` to the first `ready` it logged after the outage made it
not ready; a component the outage never made not ready was not affected.
"""

from __future__ import annotations

import asyncio
import enum
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from infra.kafka_probe import broker_answers
from infra.kafka_topics import create_topics
from infra.retry import Backoff, retry
from tests.faults.command_load import CommandLoad
from tests.faults.component_process import ComponentProcess
from tests.faults.direct_writer import DirectWriter
from tests.faults.private_stack import PrivateStack
from tests.kit.ports import free_port

# The components under test, and the ledger that turns the load into events.
WATCHED = ("relay", "projector", "scheduler")
PROCESSES = ("ledger", *WATCHED)
# A component that noticed nothing this long after the server is back was not affected.
NOTICE_SECONDS = 5.0
# Bounds on waits, so that a component that does not recover fails the test, not hangs it.
RECOVER_TIMEOUT_SECONDS = 90.0
BACK_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 10.0
# Load flowing through every component before an outage, and again after one.
STEADY_SECONDS = 5.0
# How long the ledger is given to apply what the load sent before it is stopped.
SETTLE_SECONDS = 5.0


@dataclass
class Outage:
    kind: str
    seconds: int
    down_at: float
    back_at: float = 0.0
    # component -> seconds from back_at to ready again; None: not affected.
    recovered: dict[str, float | None] = field(default_factory=dict)
    # component -> log lines written from down_at until it was ready again.
    log_lines: dict[str, int] = field(default_factory=dict)
    # components not ready again when the watched ones were (the ledger is not waited for).
    not_back: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return f"{self.kind} {self.seconds} s"

    def describe(self) -> str:
        """One line for the report: seconds to recover per component under test, and the
        ledger's (the load's) if its readiness said it was affected."""
        parts = []
        for component, seconds in self.recovered.items():
            lines = self.log_lines.get(component)
            logged = "" if lines is None else f" ({lines} log lines)"
            if seconds is not None:
                parts.append(f"{component} {seconds:.1f} s{logged}")
            elif component in WATCHED:
                parts.append(f"{component} not affected{logged}")
        parts += [f"{component} not back" for component in sorted(self.not_back)]
        return f"{self.name} outage, seconds to recover: " + ", ".join(parts)


class OutageRun:
    def __init__(self, stack: PrivateStack, log_dir: Path) -> None:
        run_id = uuid.uuid4().hex[:8]
        self.stack = stack
        self.settings = stack.settings.model_copy(
            update={
                "pg_database": f"credits_faults_{run_id}",
                "topic_prefix": f"faults-{run_id}.",
                "http_port": free_port(),
                "ops_port": free_port(),
            }
        )
        self.log_dir = log_dir
        self.load = CommandLoad(self.settings, f"load-{run_id}")
        self.writer = DirectWriter(self.settings, f"w-{run_id}")
        self.processes: dict[str, ComponentProcess] = {}
        self.outages: list[Outage] = []

    async def start(self) -> None:
        await create_topics(self.settings)
        for name in PROCESSES:
            # Every process serves an ops port: each its own.
            own = self.settings.model_copy(update={"ops_port": free_port()})
            self.processes[name] = ComponentProcess(name, own, self.log_dir)
        await eventually(
            lambda: all(self.processes[n].is_ready(n) for n in PROCESSES),
            "every component ready",
            RECOVER_TIMEOUT_SECONDS,
            self.processes.values(),
        )
        await self.load.start()
        self.writer.start()
        await asyncio.sleep(STEADY_SECONDS)

    async def postgres_outage(self, seconds: int) -> Outage:
        outage = Outage("PostgreSQL", seconds, time.time())
        await asyncio.to_thread(self.stack.stop_postgres_immediately)
        await asyncio.sleep(seconds)
        starting = asyncio.create_task(self._start_postgres())
        dsn = self.settings.pg_dsn()
        outage.back_at = await _first_success(lambda: _postgres_answers(dsn))
        await starting
        await self._recovered(outage)
        await asyncio.sleep(STEADY_SECONDS)
        return outage

    async def _start_postgres(self) -> None:
        """`postgres.sh up`, again if it fails: the private server's port is in the kernel's
        ephemeral range (32768-60999), so a client connecting to it while it is down may be
        given that very port as its own (a TCP self-connect), and the server cannot bind it
        until that socket closes."""
        await retry(
            lambda: asyncio.to_thread(self.stack.start_postgres),
            doing="starting the private PostgreSQL",
            retry_on=(subprocess.CalledProcessError,),
            backoff=Backoff(first_seconds=1.0, max_seconds=5.0, max_attempts=10),
        )

    async def kafka_outage(self, seconds: int) -> Outage:
        outage = Outage("Kafka", seconds, time.time())
        await asyncio.to_thread(self.stack.kill_kafka)
        await asyncio.sleep(seconds)
        starting = asyncio.create_task(asyncio.to_thread(self.stack.start_kafka))
        host, port = self.settings.kafka_bootstrap_servers()[0]
        outage.back_at = await _first_success(lambda: broker_answers(host, port, 1.0))
        await starting
        await self._recovered(outage)
        await asyncio.sleep(STEADY_SECONDS)
        return outage

    async def _recovered(self, outage: Outage) -> None:
        """Waits until every watched component is ready again (or was never affected)."""
        await asyncio.sleep(NOTICE_SECONDS)
        await eventually(
            lambda: all(self._recovery(name, outage) is not PENDING for name in WATCHED),
            f"every component back after {outage.name}",
            RECOVER_TIMEOUT_SECONDS,
            self.processes.values(),
        )
        for name in PROCESSES:
            recovery = self._recovery(name, outage)
            # The ledger is load here: how it recovers is reported, not waited for.
            if recovery is PENDING:
                outage.not_back.add(name)
            else:
                outage.recovered[name] = recovery
        for name in WATCHED:
            until = outage.back_at + (outage.recovered[name] or 0.0) + 0.5
            outage.log_lines[name] = sum(
                outage.down_at <= line.at <= until for line in self.processes[name].lines()
            )
        self.outages.append(outage)

    def _recovery(self, name: str, outage: Outage) -> float | Pending | None:
        """Seconds from back to ready; None if not affected; PENDING if not ready yet."""
        changes = [
            (at, ready)
            for at, ready in self.processes[name].state_changes(name)
            if at >= outage.down_at
        ]
        downs = [at for at, ready in changes if not ready]
        if not downs or downs[0] > outage.back_at + NOTICE_SECONDS:
            return None
        ups = [at for at, ready in changes if ready and at > downs[-1]]
        if not ups:
            return PENDING
        return max(ups[0] - outage.back_at, 0.0)

    async def settle(self) -> None:
        """Stops the load, then the ledger once it has applied what was sent: from then on
        the store does not change (the scheduler's expiries are not applied), and the
        followers can be compared with it."""
        await self.load.stop()
        await asyncio.to_thread(self.writer.stop)
        await asyncio.sleep(SETTLE_SECONDS)
        ledger = self.processes["ledger"]
        _, status = ledger.terminate(timeout_seconds=STOP_TIMEOUT_SECONDS)
        assert status is not None, "the ledger did not stop"


async def eventually(
    condition: Callable[[], bool],
    what: str,
    timeout_seconds: float,
    processes: Iterable[ComponentProcess] = (),
) -> None:
    """Polls `condition()` until true, failing if any of `processes` ended meanwhile."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        for process in processes:
            assert process.running(), f"{process.name} ended:\n{process.text()[-3000:]}"
        assert time.monotonic() < deadline, f"not within {timeout_seconds:.0f} s: {what}"
        await asyncio.sleep(0.2)


async def eventually_async(
    condition: Callable[[], Awaitable[bool]], what: str, timeout_seconds: float
) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not await condition():
        assert time.monotonic() < deadline, f"not within {timeout_seconds:.0f} s: {what}"
        await asyncio.sleep(0.5)


async def _first_success(probe: Callable[[], bool]) -> float:
    """The time `probe()` first returned true (polled every 0.1 s, off the event loop)."""
    deadline = time.monotonic() + BACK_TIMEOUT_SECONDS
    while not await asyncio.to_thread(probe):
        assert time.monotonic() < deadline, "the server did not come back"
        await asyncio.sleep(0.1)
    return time.time()


def _postgres_answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=1) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


class Pending(enum.Enum):
    PENDING = "not ready yet"


PENDING = Pending.PENDING
