"""The transactions read model: one row per ledger movement, with available before and after.

Rows are keyed by (account, stream version, credit type): a plan change closing several
allocations gives one row per credit type. The running balance per account and credit type
(`rm_transaction_heads`) is this projection's own, so it also cross-checks the balances model.
"""

from __future__ import annotations

from domain.account import Account
from projections.batch import BatchState
from projections.movements import movements
from projections.tables import BIGINT, EXACT_INT, TEXT, TEXT_OR_NULL, TIME, Table

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
                },
            )
