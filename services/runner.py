"""Runs service components in one process until SIGINT or SIGTERM, then stops them cleanly.

A component is `async def (settings, stop) -> None` that returns once `stop` is set. Production
runs one component per process (`credits run api`); development runs them all (`credits run all`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import psycopg
import structlog
import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from eventsourcing.persistence import PersistenceError

from domain.catalog import load_catalog
from infra.event_store import event_store_env
from infra.gc_pacing import pace_garbage_collection
from infra.ledger_application import LedgerApplication
from infra.readiness import READINESS
from infra.retry import Stopped, retry
from infra.settings import Settings
from projections.runner import run_projector
from services.api.app import create_app
from services.ledger.consumer import LedgerConsumer
from services.ledger.service import LedgerService, SystemClock
from services.payments.consumer import run_payments
from services.payments.http import payment_routes, payments_producer
from services.relay.relay import OutboxRelay
from services.scheduler.scheduler import Scheduler

Component = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]

log = structlog.get_logger("credits.runner")

# A component that does not stop within this after the signal is cancelled.
SHUTDOWN_GRACE_SECONDS = 20.0
# The ledger stops within this after the signal, whatever it was waiting for (its consumer
# takes under 8 s; see services/ledger/consumer.py).
LEDGER_STOP_SECONDS = 9.0


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the runner owns the signals for every component."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def run_api(settings: Settings, stop: asyncio.Event) -> None:
    # Stripe webhooks are published to Kafka before they are acknowledged; until the producer
    # is connected the webhook answers 503 (Stripe retries) while the rest of the API serves.
    producer = payments_producer(settings)
    connecting = asyncio.create_task(_start_when_kafka_answers(producer, stop))
    config = uvicorn.Config(
        create_app(settings, extra_routes=payment_routes(settings, producer)),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # our structured logging, not uvicorn's
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS / 2),
    )
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(server.serve())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopping.cancel()
    await serving
    connecting.cancel()
    await producer.stop()
    if not server.started and not stop.is_set():
        raise RuntimeError(f"the API could not listen on {settings.http_host}:{settings.http_port}")


async def _start_when_kafka_answers(producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
    pause_seconds = 1.0
    while not stop.is_set():
        try:
            await producer.start()
            return
        except KafkaError as error:
            log.warning("webhook producer cannot reach Kafka yet", error=str(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause_seconds)
            pause_seconds = min(pause_seconds * 2, 30.0)


async def run_ledger(settings: Settings, stop: asyncio.Event) -> None:
    # On a thread and event loop of its own: the consumer applies each batch on its loop's
    # thread (see services/ledger/batches.py), which must not stall the API or any other
    # component sharing this process (`credits run all`).
    await _on_own_thread(
        _run_ledger_here, settings, stop, name="ledger", stop_seconds=LEDGER_STOP_SECONDS
    )


async def _run_ledger_here(settings: Settings, stop: asyncio.Event) -> None:
    # The ledger is its partitions' only writer, so its cached accounts are current: no query
    # per account to fast-forward them. It forgets the accounts of partitions it loses in a
    # rebalance, and another writer shows up as a version conflict, on which the service
    # forgets the cached account and retries.
    env = {**event_store_env(settings), "AGGREGATE_CACHE_FASTFORWARD": "n"}
    try:
        # Opening it creates the tables: a ledger started while PostgreSQL is away waits for it.
        app = await retry(
            lambda: asyncio.to_thread(LedgerApplication, env=env),
            doing="opening the event store",
            retry_on=(PersistenceError, psycopg.OperationalError),
            stop=stop,
            on_state=lambda ok, detail: READINESS.report("ledger", ready=False, detail=detail),
        )
    except Stopped:
        return
    # Its cache of accounts is most of the process's objects: see infra/gc_pacing.py.
    pace_garbage_collection()
    try:
        service = LedgerService(app, load_catalog(settings.catalog_path), SystemClock())
        await LedgerConsumer(settings, service).run(stop)
    finally:
        app.close()


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
    app = LedgerApplication(env=event_store_env(settings))
    try:
        await OutboxRelay(settings, app).run(stop)
    finally:
        app.close()


async def run_scheduler(settings: Settings, stop: asyncio.Event) -> None:
    app = LedgerApplication(env=event_store_env(settings))
    try:
        await Scheduler(settings, app, SystemClock()).run(stop)
    finally:
        app.close()


COMPONENTS: dict[str, Component] = {
    "api": run_api,
    "ledger": run_ledger,
    "relay": run_relay,
    "scheduler": run_scheduler,
    "projector": run_projector,
    "payments": run_payments,
}


async def run_components(names: list[str], settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await _run_until_stopped(names, settings, stop)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _run_until_stopped(names: list[str], settings: Settings, stop: asyncio.Event) -> None:
    log.info("starting", components=names)
    tasks: set[asyncio.Task[None]] = {
        asyncio.create_task(COMPONENTS[name](settings, stop), name=name) for name in names
    }
    # One component failing stops the others: a half-running service is worse than none.
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    stop.set()
    if pending:
        _, late = await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)
        for task in late:
            log.warning(
                "cancelling a component that did not stop in time", component=task.get_name()
            )
            task.cancel()
    log.info("stopped", components=names)
    for task in done:
        # A client library may end its own task cancelled while closing (aiokafka does when a
        # broker is gone): stopped, not failed.
        if task.cancelled():
            log.warning("a component ended cancelled while stopping", component=task.get_name())
            continue
        error = task.exception()
        if error is not None:
            raise error
