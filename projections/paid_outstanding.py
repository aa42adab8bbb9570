"""Credits outstanding split by who paid for them: what is left unheld and held in paid lots
(purchases and top-ups), and what the accounts owe (overdraft and refund debt), per credit
type. The granted part (allocations, trials, promotions, admin grants, migrations) is the rest:
Σ available + owed - paid unheld.

Breakdowns name lots, not whether they were paid, so the analytics read model keeps the paid
lots that still hold credits (`PAID_LOTS`: deleted once nothing is unheld or held in them, or
once closed with nothing held), and reads each spent, held or returned part against them.
"""

from __future__ import annotations

from domain.account import Account
from domain.fields import Breakdown
from projections.batch import AccountRows, BatchState, Row
from projections.tables import BOOL, EXACT_INT, TEXT, Table

PAID_LOTS = Table(
    "rm_analytics_paid_lots",
    "account",
    (
        ("account_id", TEXT),
        ("lot_id", TEXT),
        ("credit_type", TEXT),
        ("amount", EXACT_INT),
        ("revoked", EXACT_INT),
        ("unheld", EXACT_INT),
        ("held", EXACT_INT),
        ("closed", BOOL),
    ),
    key=("account_id", "lot_id"),
)
OUTSTANDING_SPLIT = Table(
    "rm_analytics_outstanding_split",
    "counter",
    (
        ("credit_type", TEXT),
        ("paid_available", EXACT_INT),
        ("paid_held", EXACT_INT),
        ("owed", EXACT_INT),
    ),
    key=("credit_type",),
    sums=("paid_available", "paid_held", "owed"),
)


def apply_split(state: BatchState, event: Account.Event) -> None:
    """One event's changes to the paid lots and to the paid and owed sums."""
    lots = _PaidLots(state.rows(PAID_LOTS.name), event.originator_id)
    match event:
        case Account.Renewed() | Account.AllocationGranted():
            lots.owe(event.credit_type, -(event.repaid_overdraft + event.repaid_debt))
        case Account.Granted():
            lots.owe(event.credit_type, -(event.repaid_overdraft + event.repaid_debt))
            if event.paid:
                lots.open(event)
        case Account.Consumed():
            lots.owe(event.credit_type, event.overdraft_added)
            lots.move(event.breakdown, unheld=-1)
        case Account.Reserved():
            lots.move(event.breakdown, unheld=-1, held=+1)
        case Account.PartCaptured():
            lots.move(event.breakdown, held=-1)
        case Account.Captured():
            lots.move(event.breakdown, held=-1)
            lots.move(event.released, held=-1, unheld=+1)
        case Account.Released():  # and HoldExpired
            lots.move(event.breakdown, held=-1, unheld=+1)
        case Account.Revoked():
            lots.owe(event.credit_type, event.debt_added)
            lots.revoke(event)
        case Account.LotExpired():
            lots.expire(event)
    for credit_type, sums in lots.deltas.items():
        if any(sums):
            state.add(
                OUTSTANDING_SPLIT.name,
                {
                    "credit_type": credit_type,
                    "paid_available": sums[0],
                    "paid_held": sums[1],
                    "owed": sums[2],
                },
            )


class _PaidLots:
    def __init__(self, rows: AccountRows, account_id: str) -> None:
        self.rows = rows
        self.account_id = account_id
        # credit type -> [paid unheld, paid held, owed] deltas
        self.deltas: dict[str, list[int]] = {}

    def _delta(self, credit_type: str) -> list[int]:
        return self.deltas.setdefault(credit_type, [0, 0, 0])

    def owe(self, credit_type: str, amount: int) -> None:
        self._delta(credit_type)[2] += amount

    def open(self, e: Account.Granted) -> None:
        unheld = e.amount - e.repaid_overdraft - e.repaid_debt
        row = {
            "account_id": self.account_id,
            "lot_id": e.lot_id,
            "credit_type": e.credit_type,
            "amount": e.amount,
            "revoked": 0,
            "unheld": unheld,
            "held": 0,
            "closed": False,
        }
        self._delta(e.credit_type)[0] += unheld
        self._store(row)

    def move(self, parts: Breakdown, *, unheld: int = 0, held: int = 0) -> None:
        """Each part's amount times the signs given; a part returned to a closed lot is lost."""
        for part in parts:
            row = self.rows.get(self.account_id, part["lot_id"])
            if row is None:  # not a paid lot
                continue
            amount = int(part["amount"])
            back = 0 if (unheld > 0 and row["closed"]) else unheld * amount
            row["unheld"] += back
            row["held"] += held * amount
            delta = self._delta(row["credit_type"])
            delta[0] += back
            delta[1] += held * amount
            self._store(row)

    def revoke(self, e: Account.Revoked) -> None:
        row = self.rows.get(self.account_id, e.lot_id)
        if row is None:
            return
        lost = e.unspent_revoked + e.forfeited
        row["unheld"] -= lost
        row["revoked"] += e.amount
        row["closed"] = row["closed"] or row["revoked"] == row["amount"]
        self._delta(row["credit_type"])[0] -= lost
        self._store(row)

    def expire(self, e: Account.LotExpired) -> None:
        row = self.rows.get(self.account_id, e.lot_id)
        if row is None:
            return
        row["unheld"] -= e.amount
        row["closed"] = True
        self._delta(row["credit_type"])[0] -= e.amount
        self._store(row)

    def _store(self, row: Row) -> None:
        assert row["unheld"] >= 0 and row["held"] >= 0, row
        if row["held"] == 0 and (row["closed"] or row["unheld"] == 0):
            self.rows.delete(self.account_id, row["lot_id"])
        else:
            self.rows.put(row)
