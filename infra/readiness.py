"""Readiness: components in this process say whether they can do their work (`/readyz`).

A component registers when it starts (not ready), reports ready once it works (the projector
after its first pass, the Kafka consumer once it has partitions), and not ready when it stops
or fails. `/readyz` answers 200 only if the database answers and every registered component is
ready, so a load balancer stops sending traffic to a half-started process; the gauge
`credits_component_ready{component}` says the same to monitoring.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from infra.metrics import COMPONENT_READY


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
            self._components[component] = ComponentState(ready, detail)
        COMPONENT_READY.labels(component=component).set(1 if ready else 0)

    def unregister(self, component: str) -> None:
        with self._lock:
            self._components.pop(component, None)

    def snapshot(self) -> dict[str, ComponentState]:
        with self._lock:
            return dict(self._components)


# The process-wide registry (components of `credits run all` share one process).
READINESS = Readiness()
