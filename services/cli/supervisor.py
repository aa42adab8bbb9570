"""Runs service components in one process until SIGINT or SIGTERM, then stops them in bounded time.

A component is `async def (settings, stop) -> None` that returns once `stop` is set. Production
runs one component per process (`credits run api`); development runs them all (`credits run all`).

Stops are bounded whatever a component does, so an orchestrator's SIGTERM is enough (its kill
after 10 s never needed): each component has `SHUTDOWN_GRACE_SECONDS` to return, is then
cancelled, and `credits run` ends the process `HARD_STOP_SECONDS` after the stop began even if
something still runs (a thread blocked in a client library, a component ignoring both).

Outages do not end a component: components retry lost connections themselves (infra/retry.py),
and one that ends on an outage error anyway is started again here, with the same backoff, so
`credits run all` keeps running through an outage. Any other error stops the process: a
half-running service is worse than none.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

import psycopg
import structlog
from eventsourcing.persistence import PersistenceError

from domain.catalog import load_catalog
from infra.http_serving import CannotListen
from infra.ledger_application import LedgerApplication
from infra.ops_server import dependency_checks, ops_app, serve_ops
from infra.outages import ASYNCPG_OUTAGE, KAFKA_OUTAGE, POSTGRES_OUTAGE
from infra.process_event_store import borrow_event_store, give_back_event_store
from infra.readiness import READINESS
from infra.retry import Stopped, retry, until_stopped
from infra.settings import Settings
from services.api.server import run_api
from services.ledger.consumer import LedgerConsumer
from services.ledger.gc_pacing import pace_garbage_collection
from services.ledger.service import LedgerService, SystemClock
from services.payments.consumer import run_payments
from services.projector.runnable import run_projector
from services.relay.relay import OutboxRelay
from services.scheduler.scheduler import Scheduler

Component = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]

log = structlog.get_logger("credits.runner")

# A component that does not stop within this after the signal is cancelled...
SHUTDOWN_GRACE_SECONDS = 6.0
# ... and has this much longer to end once cancelled.
CANCEL_GRACE_SECONDS = 1.0
# `credits run` ends the process this long after the stop began, whatever still runs: within
# 10 s of SIGTERM, with room for the exit itself on a busy host.
HARD_STOP_SECONDS = 8.5
# The exit status when it had to (EX_SOFTWARE: a component did not stop as it should).
HARD_STOP_EXIT_STATUS = 70
# What a component may end on without stopping the process: it is started again.
OUTAGE_ERRORS = (*POSTGRES_OUTAGE, *ASYNCPG_OUTAGE, *KAFKA_OUTAGE)
# The ledger stops within this after the signal, whatever it was waiting for (its consumer
# takes under 8 s; see services/ledger/consumer.py).
LEDGER_STOP_SECONDS = 9.0

# Components of this process not yet ended (for the log line of a hard stop).
_RUNNING: set[str] = set()


async def run_ledger(settings: Settings, stop: asyncio.Event) -> None:
    # On a thread and event loop of its own: the consumer applies each batch on its loop's
    # thread (see services/ledger/batches.py), which must not stall the API or any other
    # component sharing this process (`credits run all`).
    await _on_own_thread(
        _run_ledger_here, settings, stop, name="ledger", stop_seconds=LEDGER_STOP_SECONDS
    )


async def _run_ledger_here(settings: Settings, stop: asyncio.Event) -> None:
    # The ledger is its partitions' only writer, so its cached accounts are current: no query
    # per account to fast-forward them (see infra/process_event_store.py). It forgets the
    # accounts of partitions it loses in a rebalance, and another writer shows up as a version
    # conflict, on which the service forgets the cached account and retries.
    try:
        # Opening it creates the tables: a ledger started while PostgreSQL is away waits for it.
        app = await retry(
            lambda: asyncio.to_thread(borrow_event_store, settings),
            doing="opening the event store",
            retry_on=(PersistenceError, psycopg.OperationalError),
            stop=stop,
            on_state=lambda ok, detail: READINESS.report("ledger", ready=False, detail=detail),
        )
    except Stopped:
        return
    # Its cache of accounts is most of the process's objects: see services/ledger/gc_pacing.py.
    pace_garbage_collection()
    try:
        service = LedgerService(app, load_catalog(settings.catalog_path), SystemClock())
        await LedgerConsumer(settings, service).run(stop)
    finally:
        give_back_event_store(app)


async def _on_own_thread(
    component: Component,
    settings: Settings,
    stop: asyncio.Event,
    *,
    name: str,
    stop_seconds: float = SHUTDOWN_GRACE_SECONDS,
) -> None:
    """Runs `component` on a new thread with its own event loop; `stop` reaches it there.

    Once told to stop, it is waited for at most `stop_seconds`: work it left on a worker thread
    (a database call waiting out a connect timeout) must not hold up the process's exit.
    """
    outer = asyncio.get_running_loop()
    started: asyncio.Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = outer.create_future()
    finished: asyncio.Future[None] = outer.create_future()

    def settle(error: BaseException | None) -> None:
        if finished.done():
            return
        if error is None:
            finished.set_result(None)
        else:
            finished.set_exception(error)

    async def serve() -> None:
        # A new thread starts with an empty context: its lines name the component too.
        structlog.contextvars.bind_contextvars(component=name)
        own_stop = asyncio.Event()
        outer.call_soon_threadsafe(started.set_result, (asyncio.get_running_loop(), own_stop))
        await component(settings, own_stop)

    def main() -> None:
        error: BaseException | None = None
        try:
            asyncio.run(serve())
        except BaseException as caught:  # handed to the runner, which decides what it means
            error = caught
        with contextlib.suppress(RuntimeError):  # the runner's loop is gone: nobody to tell
            outer.call_soon_threadsafe(settle, error)

    # A daemon: a component that ignores its stop must not keep the process alive.
    threading.Thread(target=main, name=name, daemon=True).start()
    stopping = asyncio.create_task(stop.wait())
    try:
        either: set[asyncio.Future[Any]] = {finished, stopping}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not finished.done():
            either = {started, finished}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            _tell_to_stop(started)
            await asyncio.wait({finished}, timeout=stop_seconds)
            if not finished.done():
                log.warning("a component did not stop in time; its thread is left", component=name)
                return
        await finished
    except asyncio.CancelledError:
        # The runner gave up waiting: the thread is told to stop, and not waited for.
        _tell_to_stop(started)
        raise
    finally:
        stopping.cancel()


def _tell_to_stop(started: asyncio.Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
    if started.done():
        loop, own_stop = started.result()
        with contextlib.suppress(RuntimeError):  # its loop has closed: it stopped already
            loop.call_soon_threadsafe(own_stop.set)


async def run_relay(settings: Settings, stop: asyncio.Event) -> None:
    app = await _open_event_store(settings, stop, "relay")
    if app is None:
        return
    try:
        await OutboxRelay(settings, app).run(stop)
    finally:
        give_back_event_store(app)


async def run_scheduler(settings: Settings, stop: asyncio.Event) -> None:
    app = await _open_event_store(settings, stop, "scheduler")
    if app is None:
        return
    try:
        await Scheduler(settings, app, SystemClock()).run(stop)
    finally:
        give_back_event_store(app)


async def _open_event_store(
    settings: Settings, stop: asyncio.Event, component: str
) -> LedgerApplication | None:
    """The process's event-store application, once PostgreSQL answers (None: stopped before)."""
    READINESS.register(component)
    doing = f"{component}: opening the event store"
    try:
        return await retry(
            lambda: until_stopped(asyncio.to_thread(borrow_event_store, settings), stop, doing),
            doing=doing,
            retry_on=POSTGRES_OUTAGE,
            stop=stop,
            on_state=READINESS.reporter(component),
        )
    except Stopped:
        READINESS.report(component, ready=False, detail="stopped")
        return None


COMPONENTS: dict[str, Component] = {
    "api": run_api,
    "ledger": run_ledger,
    "relay": run_relay,
    "scheduler": run_scheduler,
    "projector": run_projector,
    "payments": run_payments,
}

# The servers each component needs: its process's `/readyz` checks them.
NEEDS: dict[str, frozenset[str]] = {
    "api": frozenset({"postgres", "kafka"}),
    "ledger": frozenset({"postgres", "kafka"}),
    "relay": frozenset({"postgres", "kafka"}),
    "scheduler": frozenset({"postgres", "kafka"}),
    "projector": frozenset({"postgres"}),
    "payments": frozenset({"postgres", "kafka"}),
}


def run_process(names: list[str], settings: Settings) -> int:
    """`credits run`: the components until a signal, then a bounded stop of the process."""
    hard_stop = _HardStop()
    try:
        asyncio.run(run_components(names, settings, on_stop=hard_stop.arm))
    except CannotListen as error:
        # A port setting to fix: one line that says which, not a traceback.
        log.error("cannot start", reason=str(error))
        print(f"credits run: {error}", file=sys.stderr)
        return 2
    # Interpreter exit still joins threads (a blocked `asyncio.to_thread` call, the ledger's
    # loop): the armed hard stop bounds that too.
    return 0


async def run_components(
    names: list[str],
    settings: Settings,
    *,
    on_stop: Callable[[], None] | None = None,
    ops: bool = True,
) -> None:
    """Runs the named components until SIGINT or SIGTERM (or one fails), then stops them.

    `on_stop` is called once when stopping begins, from the signal handler itself: it runs
    even while a component keeps the event loop busy. With `ops`, the process serves its ops
    port (infra/ops_server.py) meanwhile: one per process, whichever components it runs.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stopping = _Stopping(loop, stop, on_stop)
    signals = (signal.SIGINT, signal.SIGTERM)
    # signal.signal rather than loop.add_signal_handler: the handler runs in the main thread as
    # soon as Python code runs there, even if the loop is blocked, so the hard stop is armed.
    previous = {sig: signal.signal(sig, stopping.on_signal) for sig in signals}
    try:
        await _run_until_stopped(names, settings, stopping, ops=ops)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Stopping:
    """The stop of one run: set once, by a signal or a failing component."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stop: asyncio.Event,
        on_stop: Callable[[], None] | None,
    ) -> None:
        self.loop = loop
        self.stop = stop
        self._on_stop = on_stop
        # Plain values: signal handlers run in the main thread, between two bytecodes of it.
        self._begun = False
        self._signals = 0

    def on_signal(self, signum: int, _: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            # A second Ctrl-C or SIGTERM: whoever sends it does not want to wait.
            _exit_now("second signal", HARD_STOP_EXIT_STATUS)
        self.begin()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(self.stop.set)

    def begin(self) -> None:
        if self._begun:
            return
        self._begun = True
        if self._on_stop is not None:
            self._on_stop()


class _HardStop:
    """Ends the process `HARD_STOP_SECONDS` after it is armed, whatever still runs."""

    def __init__(self) -> None:
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def arm(self) -> None:
        with self._lock:
            if self._timer is not None:
                return
            self._timer = threading.Timer(HARD_STOP_SECONDS, self._expire)
            self._timer.daemon = True  # an exit that comes sooner does not wait for it
            self._timer.start()

    def _expire(self) -> None:
        _exit_now(f"not stopped {HARD_STOP_SECONDS} s after the stop began", HARD_STOP_EXIT_STATUS)


def _exit_now(reason: str, status: int) -> None:
    main = threading.main_thread()
    still = sorted(
        t.name
        for t in threading.enumerate()
        if t is not main and t is not threading.current_thread() and not t.daemon
    )
    log.error("ending the process", reason=reason, running=_RUNNING.copy(), threads=still)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


async def _run_until_stopped(
    names: list[str], settings: Settings, stopping: _Stopping, *, ops: bool
) -> None:
    stop = stopping.stop
    log.info("starting", components=names)
    tasks: set[asyncio.Task[None]] = set()
    # Besides the components: the ops port, which ends only on a stop or an error.
    watched: set[asyncio.Task[None]] = set()
    if ops:
        # A process that cannot serve its probes fails like a component that cannot start.
        needs = set().union(*(NEEDS.get(name, frozenset()) for name in names))
        app = ops_app(checks=dependency_checks(settings, needs))
        serving = asyncio.create_task(serve_ops(settings, stop, app), name="ops port")
        _RUNNING.add("ops port")
        serving.add_done_callback(lambda done: _RUNNING.discard(done.get_name()))
        watched.add(serving)
    for name in names:
        task = asyncio.create_task(_supervised(name, settings, stop), name=name)
        _RUNNING.add(name)
        task.add_done_callback(lambda done: _RUNNING.discard(done.get_name()))
        tasks.add(task)
    # Until a signal, or one component failing (which stops the others: a half-running service
    # is worse than none), or every component returning.
    ended = asyncio.ensure_future(asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({ended, stopped, *watched}, return_when=asyncio.FIRST_COMPLETED)
    ended.cancel()
    stopped.cancel()
    tasks |= watched
    stopping.begin()
    stop.set()
    pending = {task for task in tasks if not task.done()}
    if pending:
        _, late = await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)
        for task in late:
            log.warning(
                "cancelling a component that did not stop in time", component=task.get_name()
            )
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=CANCEL_GRACE_SECONDS)
    log.info("stopped", components=names)
    for task in tasks:
        if not task.done():
            continue  # ignored its cancel too: the hard stop ends it with the process
        # A client library may end its own task cancelled while closing (aiokafka does when a
        # broker is gone): stopped, not failed.
        if task.cancelled():
            log.warning("a component ended cancelled while stopping", component=task.get_name())
            continue
        error = task.exception()
        if error is not None:
            raise error


async def _supervised(name: str, settings: Settings, stop: asyncio.Event) -> None:
    """The component until `stop`; started again when it ends on an outage error."""
    # Bound in this task's own context: every line the component logs names it.
    structlog.contextvars.bind_contextvars(component=name)
    component = COMPONENTS[name]
    with contextlib.suppress(Stopped):
        await retry(
            lambda: component(settings, stop),
            doing=f"running {name} (ended on an outage error)",
            retry_on=OUTAGE_ERRORS,
            stop=stop,
        )
