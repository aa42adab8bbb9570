"""Readiness: components in this process say whether they can do their work (`/readyz`).

A component registers when it starts (not ready), reports ready once it works (the projector
after its first pass, the Kafka consumer once it has partitions), and not ready when it stops
or fails. `/readyz` answers 200 only if the database answers and every registered component is
ready, so a load balancer stops sending traffic to a half-started process.

Each change of a component's state is logged once (`ready` / `not ready`, with the reason) and
shown by the `credits_component_ready` gauge: an outage of any length is two log lines, not a
line per attempt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import structlog

from infra.metrics import COMPONENT_READY

log = structlog.get_logger("credits.readiness")


@dataclass(frozen=True)
class ComponentState:
    ready: bool
    detail: str


class Readiness:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._components: dict[str, ComponentState] = {}

    def register(self, component: str, detail: str = "starting") -> None:
        self.report(component, ready=False, detail=detail)

    def report(self, component: str, *, ready: bool, detail: str = "") -> None:
        with self._lock:
            before = self._components.get(component)
            self._components[component] = ComponentState(ready, detail)
        COMPONENT_READY.labels(component).set(1 if ready else 0)
        if ready and (before is None or not before.ready):
            log.info("ready", component=component, detail=detail)
        elif not ready and (before is None or before.ready):
            # The reason may change while an outage goes on: only the change of state is logged.
            # (The failure itself is logged as a warning by infra/retry.py.)
            log.info("not ready", component=component, detail=detail)

    def reporter(self, component: str) -> Callable[[bool, str], None]:
        """`on_state` for infra/retry.retry: the component's readiness follows its retries."""

        def report(ready: bool, detail: str) -> None:
            self.report(component, ready=ready, detail=detail)

        return report

    def unregister(self, component: str) -> None:
        with self._lock:
            self._components.pop(component, None)
        with suppress(KeyError):  # never reported
            COMPONENT_READY.remove(component)

    def snapshot(self) -> dict[str, ComponentState]:
        with self._lock:
            return dict(self._components)


# The process-wide registry (components of `credits run all` share one process).
READINESS = Readiness()
