"""Garbage collection paced for a process that keeps a large cache (the ledger's accounts).

CPython's full collection walks every object it tracks. With 10,000 accounts cached, the ledger
paused for ~80 ms about once a second under load: that, not the work, set its p99 latency
(`make bench`: p99 93 ms with the default, 50 ms paced). So the survivors of each full collection
are frozen (`gc.freeze`) and later ones walk only what is newer.

Frozen objects are never collected, so reference cycles among them that become garbage would
stay: at most once every `FULL_COLLECTION_INTERVAL_SECONDS` everything is unfrozen, and the next
full collection walks (and reclaims) it all, once.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any

FULL_COLLECTION_INTERVAL_SECONDS = 600.0


class GcPacer:
    def __init__(
        self,
        interval_seconds: float = FULL_COLLECTION_INTERVAL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        assert interval_seconds > 0
        self.interval_seconds = interval_seconds
        self.monotonic = monotonic
        self.unfrozen_at = monotonic()
        self.full_collections = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        self.full_collections += 1
        now = self.monotonic()
        if now - self.unfrozen_at >= self.interval_seconds:
            # The next full collection walks everything, cycles among old objects included.
            gc.unfreeze()
            self.unfrozen_at = now
        else:
            gc.freeze()


_installed: GcPacer | None = None
_lock = threading.Lock()


def pace_garbage_collection() -> GcPacer:
    """Installs the pacing for this process, once; later calls return the installed pacer."""
    global _installed
    with _lock:
        if _installed is None:
            _installed = GcPacer()
            gc.callbacks.append(_installed)
        return _installed
