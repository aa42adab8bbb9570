"""What every projection is: named tables, and a pure function from an event to row changes."""

from __future__ import annotations

from typing import Protocol

from domain.account import Account
from projections.batch import BatchState
from projections.tables import Table


class Projection(Protocol):
    name: str
    tables: tuple[Table, ...]

    def apply(self, state: BatchState, event: Account.Event, position: int) -> None:
        """Change `state` for one event; `position` is its notification id. No I/O."""
        ...

    def finish(self, state: BatchState) -> None:
        """Complete what `apply` deferred (once per batch, before it is written)."""
        ...
