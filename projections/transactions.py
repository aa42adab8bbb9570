"""The transactions read model: one row per ledger movement, with available before and after.

Rows are keyed by (account, stream version, credit type): a plan change closing several
allocations gives one row per credit type. The running balance per account and credit type
(`rm_transaction_heads`) is this projection's own, so it also cross-checks the balances model.

Each row names its origin (`projections/movements.py` `Origin`) in the `origin_*` columns, added
after the others: a table made before them gets them null (origin unknown) until a rebuild.
"""

from __future__ import annotations

from domain.account import Account
from projections.batch import BatchState
from projections.movements import movements
from projections.tables import BIGINT, EXACT_INT, TEXT, TEXT_OR_NULL, TIME, TIME_OR_NULL, Table

# Origin field → its column, in storage order (after the first columns: see above).
ORIGIN_COLUMNS = (
    ("source", "origin_source", TEXT_OR_NULL),
    ("pack", "origin_pack", TEXT_OR_NULL),
    ("payment_reference", "origin_payment_reference", TEXT_OR_NULL),
    ("top_up_id", "origin_top_up_id", TEXT_OR_NULL),
    ("hold_id", "origin_hold_id", TEXT_OR_NULL),
    ("plan", "origin_plan", TEXT_OR_NULL),
    ("period_id", "origin_period_id", TEXT_OR_NULL),
    ("period_start", "origin_period_start", TIME_OR_NULL),
    ("period_end", "origin_period_end", TIME_OR_NULL),
    ("reason", "origin_reason", TEXT_OR_NULL),
)

TRANSACTIONS = Table(
    "rm_transactions",
    "append",
    (
        ("account_id", TEXT),
        ("version", BIGINT),
        ("credit_type", TEXT),
        ("position", BIGINT),
        ("at", TIME),
        ("kind", TEXT),
        ("amount", EXACT_INT),
        ("delta", EXACT_INT),
        ("available_before", EXACT_INT),
        ("available_after", EXACT_INT),
        ("reference", TEXT_OR_NULL),
        ("command_id", TEXT_OR_NULL),
        *((column, sql_type) for _, column, sql_type in ORIGIN_COLUMNS),
    ),
    key=("account_id", "version", "credit_type"),
)
HEADS = Table(
    "rm_transaction_heads",
    "account",
    (("account_id", TEXT), ("credit_type", TEXT), ("available", EXACT_INT)),
    key=("account_id", "credit_type"),
)


class TransactionsProjection:
    name = "transactions"
    tables: tuple[Table, ...] = (TRANSACTIONS, HEADS)

    def finish(self, state: BatchState) -> None:
        pass

    def apply(self, state: BatchState, event: Account.Event, position: int) -> None:
        heads = state.rows(HEADS.name)
        account_id = event.originator_id
        for moved in movements(event):
            head = heads.get(account_id, moved.credit_type) or {
                "account_id": account_id,
                "credit_type": moved.credit_type,
                "available": 0,
            }
            before = head["available"]
            head["available"] = before + moved.available_delta
            heads.put(head)
            state.append(
                TRANSACTIONS.name,
                {
                    "account_id": account_id,
                    "version": event.originator_version,
                    "credit_type": moved.credit_type,
                    "position": position,
                    "at": event.timestamp,
                    "kind": moved.kind,
                    "amount": moved.amount,
                    "delta": moved.available_delta,
                    "available_before": before,
                    "available_after": head["available"],
                    "reference": moved.reference,
                    "command_id": event.command_id,
                    **{column: getattr(moved.origin, field) for field, column, _ in ORIGIN_COLUMNS},
                },
            )
