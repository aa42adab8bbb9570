"""The balances read model: accounts, balances per credit type, open lots, open holds and
the accounts' own resource limits.

A fold of the events written independently of the aggregate (only the event fields are read),
so comparing the two is a real check. A lot is kept while it has credits left (`remaining > 0`,
held parts included); a spent lot can change nothing any more, so it is dropped, and an event
that names it must move nothing (asserted).
"""

from __future__ import annotations

from typing import Any

from domain.account import Account
from domain.catalog import Catalog
from domain.lots import Breakdown
from projections.batch import BatchState, Row
from projections.tables import (
    BIGINT,
    BOOL,
    EXACT_INT,
    TEXT,
    TEXT_OR_NULL,
    TIME,
    TIME_OR_NULL,
    Table,
)

ACCOUNTS = Table(
    "rm_accounts",
    "account",
    (
        ("account_id", TEXT),
        ("plan", TEXT),
        ("opened_at", TIME),
        ("catalog_version", TEXT),
        ("version", BIGINT),
        ("position", BIGINT),
        ("scheduled_plan", TEXT_OR_NULL),
        ("scheduled_at", TIME_OR_NULL),
    ),
    key=("account_id",),
)
BALANCES = Table(
    "rm_balances",
    "account",
    (
        ("account_id", TEXT),
        ("credit_type", TEXT),
        ("available", EXACT_INT),
        # `available` less the purchased credits the account's plan may not spend (catalog
        # `spenders`, read when the row is recomputed: a catalog change shows on the account's
        # next event, or at once after `credits projections rebuild balances`).
        ("spendable", EXACT_INT),
        ("held", EXACT_INT),
        ("allocation_remaining", EXACT_INT),
        ("purchased_remaining", EXACT_INT),
        ("overdraft", EXACT_INT),
        ("debt", EXACT_INT),
        ("next_reset_at", TIME_OR_NULL),
    ),
    key=("account_id", "credit_type"),
)
LOTS = Table(
    "rm_lots",
    "account",
    (
        ("account_id", TEXT),
        ("lot_id", TEXT),
        ("credit_type", TEXT),
        ("source", TEXT),
        ("amount", EXACT_INT),
        ("remaining", EXACT_INT),
        ("held", EXACT_INT),
        ("revoked", EXACT_INT),
        ("priority", EXACT_INT),
        ("paid", BOOL),
        ("closed", BOOL),
        ("granted_at", TIME),
        ("expires_at", TIME_OR_NULL),
        ("payment_reference", TEXT_OR_NULL),
    ),
    key=("account_id", "lot_id"),
)
HOLDS = Table(
    "rm_holds",
    "account",
    (
        ("account_id", TEXT),
        ("hold_id", TEXT),
        ("credit_type", TEXT),
        ("action", TEXT_OR_NULL),
        ("amount", EXACT_INT),
        ("reserved_at", TIME),
        ("expires_at", TIME),
    ),
    key=("account_id", "hold_id"),
)

# The account's own daily limit per resource (`set_resource_limit`); the plan's cap is the
# catalog's, and the lower of the two applies.
RESOURCE_LIMITS = Table(
    "rm_resource_limits",
    "account",
    (
        ("account_id", TEXT),
        ("resource", TEXT),
        ("daily_limit", EXACT_INT),
        ("set_at", TIME),
    ),
    key=("account_id", "resource"),
)

PAID_SOURCES = ("purchase", "top_up")


class BalancesProjection:
    name = "balances"
    tables: tuple[Table, ...] = (ACCOUNTS, BALANCES, LOTS, HOLDS, RESOURCE_LIMITS)

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def apply(self, state: BatchState, event: Account.Event, position: int) -> None:
        account_id = event.originator_id
        accounts = state.rows(ACCOUNTS.name)
        if isinstance(event, Account.Opened):
            account: Row = {
                "account_id": account_id,
                "plan": event.plan,
                "opened_at": event.timestamp,
                "catalog_version": event.catalog_version,
                "scheduled_plan": None,
                "scheduled_at": None,
            }
        else:
            found = accounts.get(account_id)
            assert found is not None, f"{account_id}: event before Opened"
            account = found
        touched = _Fold(state, account_id).apply(event, account)
        account["version"] = event.originator_version
        account["position"] = position
        accounts.put(account)
        for credit_type in touched:
            state.touched.add((account_id, credit_type))

    def finish(self, state: BatchState) -> None:
        """Balances from the lots, once per account and credit type the batch touched."""
        for account_id, credit_type in sorted(state.touched):
            _recompute(state, self.catalog, account_id, credit_type)
        state.touched.clear()


class _Fold:
    """One event's changes to one account's lots, holds and balance rows."""

    def __init__(self, state: BatchState, account_id: str) -> None:
        self.account_id = account_id
        self.lots = state.rows(LOTS.name)
        self.holds = state.rows(HOLDS.name)
        self.balances = state.rows(BALANCES.name)
        self.resource_limits = state.rows(RESOURCE_LIMITS.name)

    def apply(self, e: Account.Event, account: Row) -> set[str]:
        """The credit types whose balance the event may change."""
        match e:
            case Account.AllocationGranted():  # and Renewed
                if isinstance(e, Account.Renewed) and e.renewal != "add":
                    self._close(e.previous_lot_id, e.forfeited)
                self._add_lot(e, "allocation", None, e.repaid_overdraft, e.repaid_debt)
                self._balance(e.credit_type)["next_reset_at"] = e.period_end
            case Account.Granted():
                repaid = (e.repaid_overdraft, e.repaid_debt)
                self._add_lot(e, e.source, e.payment_reference, *repaid)
            case Account.Consumed():
                self._change_lots(e.breakdown, remaining=-1)
                self._balance(e.credit_type)["overdraft"] += e.overdraft_added
            case Account.Reserved():
                self._change_lots(e.breakdown, held=+1)
                self.holds.put(
                    {
                        "account_id": self.account_id,
                        "hold_id": e.hold_id,
                        "credit_type": e.credit_type,
                        "action": e.action,
                        "amount": e.amount,
                        "reserved_at": e.timestamp,
                        "expires_at": e.expires_at,
                    }
                )
            case Account.Captured():
                self._settle(e.hold_id, e.breakdown, e.released)
            case Account.PartCaptured():
                self._change_lots(e.breakdown, remaining=-1, held=-1)
                hold = self.holds.get(self.account_id, e.hold_id)
                assert hold is not None, (self.account_id, e.hold_id)
                self.holds.put({**hold, "amount": hold["amount"] - e.amount})
            case Account.HoldExtended():
                hold = self.holds.get(self.account_id, e.hold_id)
                assert hold is not None, (self.account_id, e.hold_id)
                self.holds.put({**hold, "expires_at": e.expires_at})
                return set()
            case Account.Released():  # and HoldExpired
                self._settle(e.hold_id, [], e.breakdown)
            case Account.Revoked():
                self._revoke(e)
            case Account.LotExpired():
                self._close(e.lot_id, e.amount)
            case Account.PlanChanged():
                account["plan"] = e.to_plan
                account["scheduled_plan"] = account["scheduled_at"] = None
                for closed in e.closed_allocations:
                    self._balance(closed["credit_type"])["next_reset_at"] = None
                    self._close(closed["lot_id"], closed["forfeited"])
                # What the new plan may spend differs for every credit type the account has.
                having = {str(row["credit_type"]) for row in self.balances.of(self.account_id)}
                return having | {str(c["credit_type"]) for c in e.closed_allocations}
            case Account.ResourceLimitSet():
                if e.daily_limit is None:
                    self.resource_limits.delete(self.account_id, e.resource)
                else:
                    self.resource_limits.put(
                        {
                            "account_id": self.account_id,
                            "resource": e.resource,
                            "daily_limit": e.daily_limit,
                            "set_at": e.timestamp,
                        }
                    )
                return set()
            case Account.PlanChangeScheduled():
                account["scheduled_plan"] = e.plan
                account["scheduled_at"] = e.effective_at
                return set()
            case _:
                return set()
        return {str(getattr(e, "credit_type"))}  # noqa: B009 - every case above has one

    def _balance(self, credit_type: str) -> Row:
        row = self.balances.get(self.account_id, credit_type)
        if row is None:
            row = {
                "account_id": self.account_id,
                "credit_type": credit_type,
                "available": 0,
                "spendable": 0,
                "held": 0,
                "allocation_remaining": 0,
                "purchased_remaining": 0,
                "overdraft": 0,
                "debt": 0,
                "next_reset_at": None,
            }
            self.balances.put(row)
        return row

    def _add_lot(
        self,
        e: Account.AllocationGranted | Account.Granted,
        source: str,
        payment_reference: str | None,
        repaid_overdraft: int,
        repaid_debt: int,
    ) -> None:
        balance = self._balance(e.credit_type)
        balance["overdraft"] -= repaid_overdraft
        balance["debt"] -= repaid_debt
        self._store_lot(
            {
                "account_id": self.account_id,
                "lot_id": e.lot_id,
                "credit_type": e.credit_type,
                "source": source,
                "amount": e.amount,
                "remaining": e.amount - repaid_overdraft - repaid_debt,
                "held": 0,
                "revoked": 0,
                "priority": e.priority,
                "paid": source in PAID_SOURCES,
                "closed": False,
                "granted_at": e.timestamp,
                "expires_at": e.expires_at,
                "payment_reference": payment_reference,
            }
        )

    def _change_lots(self, parts: Breakdown, *, remaining: int = 0, held: int = 0) -> None:
        for part in parts:
            lot = self._lot(part["lot_id"], part["amount"])
            if lot is _SPENT:
                continue
            lot["remaining"] += remaining * part["amount"]
            lot["held"] += held * part["amount"]
            self._store_lot(lot)

    def _settle(self, hold_id: str, captured: Breakdown, released: Breakdown) -> None:
        self.holds.delete(self.account_id, hold_id)
        self._change_lots(captured, remaining=-1, held=-1)
        for part in released:
            lot = self._lot(part["lot_id"], part["amount"])
            if lot is _SPENT:
                continue
            lot["held"] -= part["amount"]
            if lot["closed"]:
                # Returned to a lot that closed meanwhile: forfeited, not spendable.
                lot["remaining"] -= part["amount"]
            self._store_lot(lot)

    def _revoke(self, e: Account.Revoked) -> None:
        self._balance(e.credit_type)["debt"] += e.debt_added
        lot = self._lot(e.lot_id, e.unspent_revoked + e.forfeited)
        if lot is _SPENT:
            return
        lot["remaining"] -= e.unspent_revoked
        lot["revoked"] += e.amount
        self._store_lot(lot)
        if lot["revoked"] == lot["amount"]:
            self._close(e.lot_id, e.forfeited)

    def _close(self, lot_id: str, forfeited: int) -> None:
        lot = self._lot(lot_id, forfeited)
        if lot is _SPENT:
            return
        assert forfeited == lot["remaining"] - lot["held"], (lot, forfeited)
        lot["remaining"] -= forfeited
        lot["closed"] = True
        self._store_lot(lot)

    def _lot(self, lot_id: str, moved: int) -> Row:
        lot = self.lots.get(self.account_id, lot_id)
        if lot is None:
            # Dropped when spent: nothing can move it any more.
            assert moved == 0, (self.account_id, lot_id, moved)
            return _SPENT
        return lot

    def _store_lot(self, lot: Row) -> None:
        if lot is _SPENT:
            return
        assert 0 <= lot["held"] <= lot["remaining"] <= lot["amount"], lot
        if lot["remaining"] == 0:
            self.lots.delete(self.account_id, lot["lot_id"])
        else:
            self.lots.put(lot)


# Stands for a lot dropped when it was spent: changes to it are zero and are not stored.
_SPENT: Row = {}


def _recompute(state: BatchState, catalog: Catalog, account_id: str, credit_type: str) -> None:
    """available = Σ (remaining - held) - overdraft - debt, its allocation/paid parts, and
    spendable = available less the paid part when the plan may not spend it."""
    balance = state.rows(BALANCES.name).get(account_id, credit_type)
    assert balance is not None
    unheld = allocation = purchased = held = 0
    for lot in state.rows(LOTS.name).of(account_id):
        if lot["credit_type"] != credit_type:
            continue
        free = lot["remaining"] - lot["held"]
        unheld += free
        held += lot["held"]
        if lot["source"] == "allocation":
            allocation += free
        if lot["paid"]:
            purchased += free
    assert balance["overdraft"] >= 0 and balance["debt"] >= 0, balance
    available = unheld - balance["overdraft"] - balance["debt"]
    account = state.rows(ACCOUNTS.name).get(account_id)
    assert account is not None
    locked = 0 if _may_spend_purchased(catalog, account, credit_type) else purchased
    changes: dict[str, Any] = {
        "available": available,
        "spendable": available - locked,
        "held": held,
        "allocation_remaining": allocation,
        "purchased_remaining": purchased,
    }
    balance.update(changes)
    state.rows(BALANCES.name).put(balance)


def _may_spend_purchased(catalog: Catalog, account: Row, credit_type: str) -> bool:
    """As the ledger decides (a credit type the catalog no longer has: no restriction)."""
    if credit_type not in catalog.credit_types:
        return True
    return catalog.may_spend_purchased(str(account["plan"]), credit_type)
