"""Read-model tables: their columns, keys and how a batch writes them.

Three kinds, chosen by how a batch changes them:
- `account`: state kept per account (balances, lots, holds, heads). A batch loads every row of
  the accounts it touches, changes them in memory, then deletes and re-inserts the rows it
  changed. Only these are read back, so a batch never reads what it does not need.
- `append`: one row per fact (transactions); a batch only inserts.
- `counter`: sums (usage per day, revenue, credits outstanding); a batch adds its deltas with
  `INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`, so it never reads them.

Integers only. Credits, money and quantities are `numeric` (`EXACT_INT`): exact at any size,
since sums of many amounts at the domain's maximum pass bigint's 9.2e18 (the read side's pools
decode them as Python ints, `infra/pg_numeric.py`). Versions, positions and counts of events
stay `bigint`: the event store's own ids bound them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

TableKind = Literal["account", "append", "counter"]


@dataclass(frozen=True)
class Table:
    name: str
    kind: TableKind
    # (column, SQL type) in storage order; the key columns come first.
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    # Counter tables: the columns a delta adds to; the others are overwritten by the latest.
    sums: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [name for name, _ in self.columns]
        assert tuple(names[: len(self.key)]) == self.key, (self.name, "key columns first")
        assert self.kind != "account" or self.key[0] == "account_id", self.name
        assert set(self.sums) <= set(names) - set(self.key), self.name
        assert (self.kind == "counter") == bool(self.sums), self.name

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def sql_type(self, column: str) -> str:
        return dict(self.columns)[column]

    def create_sql(self, name: str | None = None) -> str:
        """The table under `name` (a shadow's during a rebuild), its key index named after it."""
        name = name or self.name
        columns = ", ".join(f"{column} {sql_type}" for column, sql_type in self.columns)
        return (
            f"CREATE TABLE IF NOT EXISTS {name} "
            f"({columns}, CONSTRAINT {name}_pkey PRIMARY KEY ({', '.join(self.key)}))"
        )

    def array_type(self, column: str) -> str:
        return self.sql_type(column).removesuffix(" NOT NULL") + "[]"


def not_null(sql_type: str) -> str:
    return f"{sql_type} NOT NULL"


TEXT = not_null("text")
BIGINT = not_null("bigint")
# An integer of any size, exact (see above).
EXACT_INT = not_null("numeric")
BOOL = not_null("boolean")
TIME = not_null("timestamptz")
TIME_OR_NULL = "timestamptz"
TEXT_OR_NULL = "text"
TAGS = not_null("text[]")
