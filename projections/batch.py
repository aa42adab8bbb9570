"""The in-memory state a projection changes while it applies a batch of events.

Pure: no I/O. The writer (`projections/store.py`) loads the rows of the accounts a batch touches
into a `BatchState`, the projection applies the events to it, and the writer then stores what
changed (`changes`), in one transaction with the projection's position.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from projections.tables import Table

Row = dict[str, Any]
Key = tuple[Any, ...]


class AccountRows:
    """The rows of one `account` table for the accounts loaded, and which of them changed."""

    def __init__(self, table: Table) -> None:
        assert table.kind == "account"
        self.table = table
        self._width = len(table.column_names)
        rest = table.key[1:]
        # Hot path (every change of every event): keys built without generic loops.
        self._rest: Callable[[Row], Key] = (
            (lambda row: (row[rest[0]],)) if len(rest) == 1 else (lambda row: ())
        )
        assert len(rest) <= 1, "account tables are keyed by account_id and at most one more"
        self._by_account: dict[str, dict[Key, Row]] = {}
        # Full key -> the row to store, or None to delete it.
        self.changed: dict[Key, Row | None] = {}

    def load(self, account_id: str, rows: Iterable[Row]) -> None:
        own = self._by_account.setdefault(account_id, {})
        for row in rows:
            own[self._rest(row)] = row

    def is_loaded(self, account_id: str) -> bool:
        return account_id in self._by_account

    def forget(self, account_id: str) -> None:
        self._by_account.pop(account_id, None)

    def of(self, account_id: str) -> Iterator[Row]:
        return iter(self._by_account.get(account_id, {}).values())

    def get(self, account_id: str, *rest: Any) -> Row | None:
        return self._by_account.get(account_id, {}).get(rest)

    def put(self, row: Row) -> None:
        """Insert or replace; a row changed in place must be put again to be stored."""
        assert len(row) == self._width, (self.table.name, sorted(row))
        rest = self._rest(row)
        self._by_account.setdefault(row["account_id"], {})[rest] = row
        self.changed[(row["account_id"], *rest)] = row

    def delete(self, account_id: str, *rest: Any) -> None:
        own = self._by_account.get(account_id, {})
        if own.pop(rest, None) is not None:
            self.changed[(account_id, *rest)] = None

    def accounts(self) -> int:
        return len(self._by_account)


class BatchState:
    """Every table of one projection: account rows, appended rows and counter deltas."""

    def __init__(self, tables: Iterable[Table]) -> None:
        self.tables = {table.name: table for table in tables}
        self.accounts: dict[str, AccountRows] = {
            t.name: AccountRows(t) for t in self.tables.values() if t.kind == "account"
        }
        self.appended: dict[str, list[Row]] = {
            t.name: [] for t in self.tables.values() if t.kind == "append"
        }
        self.counters: dict[str, dict[Key, Row]] = {
            t.name: {} for t in self.tables.values() if t.kind == "counter"
        }
        # What a projection must finish before the batch is written (see Projection.finish).
        self.touched: set[Key] = set()
        # Accounts in load order, for evicting the oldest (rebuilds keep state across batches).
        self._loaded: OrderedDict[str, None] = OrderedDict()

    def rows(self, table: str) -> AccountRows:
        return self.accounts[table]

    def append(self, table: str, row: Row) -> None:
        assert len(row) == len(self.tables[table].column_names), (table, sorted(row))
        self.appended[table].append(row)

    def add(self, table: str, row: Row) -> None:
        """Add the row's sums to the counter at its key; its other columns replace the old."""
        spec = self.tables[table]
        assert len(row) == len(spec.column_names), (table, sorted(row))
        key = tuple(row[column] for column in spec.key)
        current = self.counters[table].get(key)
        if current is None:
            self.counters[table][key] = dict(row)
            return
        for column, value in row.items():
            current[column] = current[column] + value if column in spec.sums else value

    # ------------------------------------------------------------ loading and flushing

    def missing(self, account_ids: Iterable[str]) -> list[str]:
        """The accounts whose rows are not in memory yet (the writer loads them)."""
        if not self.accounts:
            return []
        return [a for a in dict.fromkeys(account_ids) if a not in self._loaded]

    def load(self, account_id: str, rows: dict[str, list[Row]]) -> None:
        for name, table_rows in self.accounts.items():
            table_rows.load(account_id, rows.get(name, []))
        self._loaded[account_id] = None

    def has_changes(self) -> bool:
        return bool(self.touched) or (
            any(rows.changed for rows in self.accounts.values())
            or any(self.appended.values())
            or any(self.counters.values())
        )

    def clear_changes(self) -> None:
        for rows in self.accounts.values():
            rows.changed = {}
        for name in self.appended:
            self.appended[name] = []
        for name in self.counters:
            self.counters[name] = {}

    def loaded_accounts(self) -> list[str]:
        return list(self._loaded)

    def evict(self, max_accounts: int) -> list[str]:
        """Forget the oldest loaded accounts beyond `max_accounts` (only once flushed)."""
        assert not self.has_changes(), "evicting unsaved rows would lose them"
        evicted = []
        while len(self._loaded) > max_accounts:
            account_id, _ = self._loaded.popitem(last=False)
            for rows in self.accounts.values():
                rows.forget(account_id)
            evicted.append(account_id)
        return evicted
