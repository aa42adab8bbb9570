"""The one way this service retries: capped, jittered exponential backoff that a stop ends.

Every component uses `retry` (async) for what talks to PostgreSQL, Kafka or Stripe. Outages
are ridden out for as long as they last (`max_attempts=None`), or a bounded number of times
where the caller has somewhere else to put the work (the DLQ). Either way:
- each pause is drawn at random between 0 and the capped exponential (full jitter), so that
  processes that lost the same server do not come back in lockstep;
- a `stop` event ends the wait at once and raises `Stopped`: a component stops within its grace
  period even mid-retry;
- the log shows one line when a dependency starts failing and one when it is back, not a line
  per attempt (an 80 s outage used to fill the log), and `on_state` lets the caller report
  readiness on those same two transitions.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

log = structlog.get_logger("credits.retry")

T = TypeVar("T")


class Stopped(Exception):
    """The component was asked to stop while waiting to retry: the work stays undone."""


class RetriesExhausted(Exception):
    """`max_attempts` failed; `__cause__` is the last failure."""


@dataclass(frozen=True)
class Backoff:
    """Pause before attempt n+1: uniform(0, min(max_seconds, first_seconds * 2**(n-1)))."""

    first_seconds: float = 0.1
    max_seconds: float = 2.0
    # None: until it works or `stop` is set (outages heal by themselves, DESIGN §6).
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        assert 0 < self.first_seconds <= self.max_seconds <= 60
        assert self.max_attempts is None or self.max_attempts >= 1

    def pause_seconds(self, failed_attempts: int) -> float:
        ceiling = min(self.max_seconds, self.first_seconds * 2 ** min(failed_attempts - 1, 30))
        return random.uniform(0, ceiling)


# Outages: back within 2 s of the server (a pause never exceeds it), forever.
UNTIL_BACK = Backoff(first_seconds=0.1, max_seconds=2.0)


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    doing: str,
    retry_on: tuple[type[BaseException], ...],
    backoff: Backoff = UNTIL_BACK,
    stop: asyncio.Event | None = None,
    on_state: Callable[[bool, str], None] | None = None,
    before_retry: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """`await attempt()` until it returns; failures of `retry_on` types are retried.

    `on_state(False, reason)` is called once when the first attempt fails and
    `on_state(True, doing)` once when a later one succeeds, or ends in an error that is not
    retried (which is then raised). `before_retry` runs before each
    retry (e.g. to drop broken pooled connections).
    """
    failed = 0
    first_failure_at = 0.0
    while True:
        if stop is not None and stop.is_set() and failed:
            raise Stopped(doing)
        try:
            result = await attempt()
        except retry_on as error:
            failed += 1
            reason = f"{doing}: {type(error).__name__}: {error}"
            if failed == 1:
                first_failure_at = time.monotonic()
                log.warning("failing; retrying until it works", doing=doing, error=reason)
                if on_state is not None:
                    on_state(False, reason)
            if backoff.max_attempts is not None and failed >= backoff.max_attempts:
                raise RetriesExhausted(f"{doing} failed {failed} times: {error}") from error
            await _pause(backoff.pause_seconds(failed), stop, doing)
            if before_retry is not None:
                with suppress(*retry_on):
                    await before_retry()
            continue
        except (Stopped, asyncio.CancelledError):
            raise
        except BaseException:
            # What kept failing answered, with an outcome retrying is not for (a conflict: a
            # batch committed just before the connection broke). The failing is over: a state
            # left failing would say "not ready" until the next failure happened to recover.
            if failed:
                _recovered(doing, failed, first_failure_at, on_state)
            raise
        if failed:
            _recovered(doing, failed, first_failure_at, on_state)
        return result


def _recovered(
    doing: str, failed: int, first_failure_at: float, on_state: Callable[[bool, str], None] | None
) -> None:
    log.warning(
        "recovered",
        doing=doing,
        failed_attempts=failed,
        outage_seconds=round(time.monotonic() - first_failure_at, 3),
    )
    if on_state is not None:
        on_state(True, doing)


async def _pause(seconds: float, stop: asyncio.Event | None, doing: str) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    if stop.is_set():
        raise Stopped(doing)


async def until_stopped(work: Awaitable[T], stop: asyncio.Event, doing: str) -> T:
    """`await work`, unless `stop` is set first: then `work` is cancelled and `Stopped` raised.

    For an attempt that may wait as long as an outage lasts (acknowledgements from a broker
    that is down, a pooled connection): a stop must not wait for it. Whatever the attempt left
    undone stays undone (a batch not acknowledged is published again, an offset not saved is
    read again).
    """
    working = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({working, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        working.cancel()
        raise
    finally:
        stopping.cancel()
    if working.done():
        return working.result()
    # Not awaited: work that ignores its cancellation (a thread) must not hold up the stop.
    working.add_done_callback(_consume_outcome)
    working.cancel()
    raise Stopped(doing)


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not report it as never retrieved
