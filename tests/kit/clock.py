"""The tests' one clock: time stands still until a test moves it, and only forward.

The ledger reads `now()` (domain/clock.py); components that pace themselves by a monotonic
clock read `monotonic()`; the payment consumer takes `now` itself as its clock.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

# A Wednesday, the 31st of a month before a leap February: month ends get exercised.
START = datetime(2024, 1, 31, 10, 0, tzinfo=UTC)


class SettableClock:
    """`step`: how far time moves on every read, so that the events of concurrent writers
    (threads may share the clock) get distinct, increasing times; none by default."""

    def __init__(self, start: datetime = START, step: timedelta = timedelta(0)) -> None:
        assert start.tzinfo is not None, "the ledger's times are timezone-aware"
        assert step >= timedelta(0), "tests move time forward only"
        self._now = start
        self._step = step
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            self._now += self._step
            return self._now

    def monotonic(self) -> float:
        """Seconds, for what measures intervals rather than reading the date."""
        return self.now().timestamp()

    def advance(self, **delta: float) -> datetime:
        """Moves time forward by `timedelta(**delta)`; the new time."""
        moved = timedelta(**delta)
        assert moved >= timedelta(0), "tests move time forward only"
        with self._lock:
            self._now += moved
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            assert when >= self._now, "tests move time forward only"
            self._now = when
