"""Whether the ledger can do its work now, and if not why: `/readyz`, its state, one log line.

Several things can be wrong at once (PostgreSQL away while a reply waits for Kafka): each is a
trouble of its own, set when it starts and cleared when it ends, and the ledger is ready only
when it is consuming and none is left. Each change is logged once, not once per attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from infra.readiness import READINESS

log = structlog.get_logger("credits.ledger")

COMPONENT = "ledger"


@dataclass
class LedgerConsumerState:
    ready: bool = False
    reason: str = "not started"
    # starting, consuming (ready unless a trouble says otherwise), stopped, or halted: why.
    phase: str = "not started"
    batches: int = 0
    commands_by_status: dict[str, int] = field(default_factory=dict)
    dlq_records: int = 0
    replies_resent: int = 0
    # Kafka batches aiokafka could not parse, read again by services/ledger/unreadable.py.
    unreadable_batches: int = 0
    # Batches that failed in a way nothing foresaw, read again after a pause (see consumer).
    unexpected_failures: int = 0


class Health:
    def __init__(self, state: LedgerConsumerState) -> None:
        self.state = state
        self._phase = state.phase
        self._troubles: dict[str, str] = {}

    def phase(self, phase: str) -> None:
        """starting, consuming, stopped, or halted: why (faults retrying cannot fix)."""
        self._phase = self.state.phase = phase
        self._report()

    def trouble(self, source: str, reason: str) -> None:
        if self._troubles.get(source) == reason:
            return
        self._troubles[source] = reason
        self._report()

    def clear(self, source: str) -> None:
        if self._troubles.pop(source, None) is not None:
            self._report()

    def on_state(self, source: str) -> Callable[[bool, str], None]:
        """For `infra/retry.retry`: a failing attempt is a trouble until one succeeds."""

        def on_state(ok: bool, reason: str) -> None:
            if ok:
                self.clear(source)
            else:
                self.trouble(source, reason)

        return on_state

    def _report(self) -> None:
        ready = self._phase == "consuming" and not self._troubles
        reason = "; ".join(self._troubles.values()) if self._troubles else self._phase
        if (ready, reason) == (self.state.ready, self.state.reason):
            return
        self.state.ready, self.state.reason = ready, reason
        READINESS.report(COMPONENT, ready=ready, detail=reason)
        if ready:
            log.info("ready", phase=self._phase)
        else:
            log.warning("not ready", reason=reason)
