"""Runs a scenario through the real ledger service on the in-memory event store, one simulated
day at a time: what the scheduler would fire first (`expire` for every account whose
`next_due_at` has passed: renewals, expiries, scheduled plan changes), then the day's commands,
then the day's use; the balances at the end of each day are kept. Nothing reads the real clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from domain.account import Account
from domain.catalog import Catalog
from domain.replies import Reply
from infra.ledger_application import LedgerApplication
from services.ledger.service import LedgerService
from services.simulation.scenario import Scenario


class SimulatedClock:
    """The simulation's time: set by the runner, only forward."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def set(self, when: datetime) -> None:
        assert when >= self.current, "simulated time moves forward only"
        self.current = when


@dataclass(frozen=True)
class DayBalances:
    day: int
    date: str
    # account id → credit type → available at the end of the day
    available: dict[str, dict[str, int]]
    used: dict[str, int]  # account id → units consumed that day
    refused: dict[str, int]  # account id → consumes refused that day


@dataclass
class SimulationResult:
    days: list[DayBalances] = field(default_factory=list)
    # (account, command type, error code) → count, for the refusals of scripted commands
    refusals: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def final(self) -> dict[str, dict[str, int]]:
        return self.days[-1].available if self.days else {}


class Simulation:
    def __init__(self, scenario: Scenario, catalog: Catalog) -> None:
        self.scenario = scenario
        self.catalog = catalog
        self.clock = SimulatedClock(scenario.start)
        self.app = LedgerApplication(env={"PERSISTENCE_MODULE": "infra.memory_store"})
        self.service = LedgerService(self.app, catalog, self.clock)
        self._sent = 0

    def run(self, on_day: Callable[[int], None] | None = None) -> SimulationResult:
        result = SimulationResult()
        for script in self.scenario.accounts:
            self._send({"type": "open_account", "account_id": script.id, "plan": script.plan})
        for day in range(self.scenario.days):
            self.clock.set(self.scenario.start + timedelta(days=day))
            self._fire_due()
            used: Counter[str] = Counter()
            refused: Counter[str] = Counter()
            for script in self.scenario.accounts:
                for scripted in (c for c in script.commands if c.day == day):
                    reply = self._send(scripted.command(script.id, self._next_id()))
                    if reply.status == "rejected" and reply.error is not None:
                        result.refusals[(script.id, scripted.type, reply.error.code)] += 1
                for use in (u for u in script.daily if u.on(day)):
                    for _ in range(use.count):
                        reply = self._consume(script.id, use.action, use.resource)
                        if reply.status == "accepted":
                            used[script.id] += int(reply.result.get("amount", 0))
                        else:
                            refused[script.id] += 1
            result.days.append(
                DayBalances(
                    day=day,
                    date=self.clock.now().date().isoformat(),
                    available=self._available(),
                    used=dict(used),
                    refused=dict(refused),
                )
            )
            if on_day is not None:
                on_day(day)
        return result

    def _fire_due(self) -> None:
        for script in self.scenario.accounts:
            account = self._account(script.id)
            due = account.next_due_at() if account is not None else None
            if due is not None and due <= self.clock.now():
                self._send({"type": "expire", "account_id": script.id})

    def _consume(self, account_id: str, action: str, resource: str | None) -> Reply:
        command: dict[str, Any] = {"type": "consume", "account_id": account_id, "action": action}
        if resource is not None:
            command["resource"] = resource
        return self._send(command)

    def _send(self, command: dict[str, Any]) -> Reply:
        command.setdefault("command_id", self._next_id())
        return self.service.handle(command)

    def _next_id(self) -> str:
        self._sent += 1
        return f"sim-{self._sent}"

    def _account(self, account_id: str) -> Account | None:
        try:
            account: Account = self.app.repository.get(account_id)
        except AggregateNotFoundError:
            return None
        return account

    def _available(self) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for script in self.scenario.accounts:
            account = self._account(script.id)
            if account is None:
                continue
            found[script.id] = {
                credit_type: int(figures["available"])
                for credit_type, figures in account.balances(self.catalog).items()
            }
        return found
