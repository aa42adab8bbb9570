"""What an account holds, how it reads, and how its events change it.

`AccountState` is the state half of the account aggregate (domain/account.py adds the commands):
value objects for lots, holds, allocations, top-ups, daily usage and what is owed, plus the
few facts that belong to the account as a whole. Only events (domain/events.py) call the
methods under "evolving", and after each event the invariants are asserted, live and on replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain.allocations import Allocations, AllocationState, ScheduledPlan
from domain.catalog import PAID_SOURCES, Catalog
from domain.errors import ErrorCode, LedgerError
from domain.fields import Breakdown, Identifier, LotId, Name
from domain.holds import Hold, HoldOutcome, Holds
from domain.lots import Lot, Lots
from domain.owed import Owed
from domain.top_ups import TopUpRequest, TopUps
from domain.usage import DailyUsage

if TYPE_CHECKING:
    from domain.events import AllocationGranted, Reserved


class AccountState:
    def __init__(self, plan: str, catalog_version: str, timestamp: datetime) -> None:
        self.plan = plan
        self.catalog_version = catalog_version
        # Monthly periods renew on this anniversary (clamped to the month's last day).
        self.anchor_at = timestamp
        self.lots = Lots()
        self.allocations = Allocations()
        self.holds = Holds()
        self.owed = Owed()
        # Credit type → the threshold it fell to or below; re-armed once back above it.
        self.low_balance_fired: dict[Name, int] = {}
        self.usage = DailyUsage()
        # Resource → the account's own daily limit on it (`set_resource_limit`).
        self.resource_limits: dict[Identifier, int] = {}
        self.top_ups = TopUps()
        self.scheduled_plan: ScheduledPlan | None = None
        self.migrated_from: str | None = None
        # Payment reference → the lot it paid for: each grants once.
        self.purchases: dict[str, LotId] = {}

    # ---------------------------------------------------------------- reading

    def available(self, credit_type: str) -> int:
        """Σ (remaining - held) - overdraft - debt."""
        return self.lots.unheld(credit_type) - self.owed.of(credit_type)

    def available_per_credit_type(self, credit_types: Iterable[str]) -> dict[str, int]:
        """`available` of several credit types, in one pass over the lots."""
        unheld = self.lots.unheld_per_credit_type(credit_types)
        overdraft, debt = self.owed.overdraft, self.owed.debt
        return {ct: n - overdraft.get(ct, 0) - debt.get(ct, 0) for ct, n in unheld.items()}

    def spendable(self, credit_type: str, may_spend_purchased: bool) -> int:
        """What the plan may spend now: Σ unheld of the lots it may spend - overdraft - debt.
        Equals `available` unless the plan may not spend purchased lots (seed 000's free tier);
        a consume may go below it by the credit type's overdraft floor, a reserve may not."""
        lots = self.lots.spendable(credit_type, paid_too=may_spend_purchased)
        return sum(lot.unheld for lot in lots) - self.owed.of(credit_type)

    def held(self, credit_type: str) -> int:
        return self.lots.held(credit_type)

    def lots_total(self, credit_type: str) -> int:
        """Σ remaining of the lots: with holds and what is owed, it reconciles with
        `available`."""
        return self.lots.total(credit_type)

    @property
    def pending_top_ups(self) -> Mapping[str, TopUpRequest]:
        return self.top_ups.pending

    @property
    def top_up_seq(self) -> int:
        return self.top_ups.seq

    def revocable_lot(self, payment_reference: str | None, grant_id: str | None) -> Lot:
        """The lot a revocation names: granted (`grant_id`) or paid (`payment_reference`)."""
        lot_id = grant_id if grant_id is not None else self.purchases.get(payment_reference or "")
        lot = self.lots.get(lot_id or "")
        if lot is None or lot.source == "allocation":
            target = grant_id if grant_id is not None else payment_reference
            raise LedgerError(ErrorCode.invalid_command, f"nothing to revoke for {target!r}")
        return lot

    def next_due_at(self) -> datetime | None:
        """When time alone next changes this account: a hold or lot expiring, a period ending,
        a scheduled plan change. The scheduler sends an `expire` command at that moment; a
        command arriving earlier catches up the same way, so a late scheduler loses nothing."""
        due = [self.holds.next_expiry(), self.allocations.next_end(), self.lots.next_expiry()]
        if self.scheduled_plan is not None:
            due.append(self.scheduled_plan.effective_at)
        return min((at for at in due if at is not None), default=None)

    def balances(self, catalog: Catalog) -> dict[str, dict[str, Any]]:
        """The reply's balances, per credit type of the catalog (one pass over the lots)."""
        # unheld, held, unheld in allocation lots, unheld in paid lots
        sums = {credit_type: [0, 0, 0, 0] for credit_type in catalog.credit_types}
        for lot in self.lots.values():
            figures = sums.get(lot.credit_type)
            if figures is None:
                continue
            unheld = lot.remaining - lot.held
            figures[0] += unheld
            figures[1] += lot.held
            if lot.source == "allocation":
                figures[2] += unheld
            if lot.paid:
                figures[3] += unheld
        result: dict[str, dict[str, Any]] = {}
        for credit_type, (unheld, held, allocation_unheld, paid_unheld) in sums.items():
            allocation = self.allocations.get(credit_type)
            available = unheld - self.owed.of(credit_type)
            locked = 0 if catalog.may_spend_purchased(self.plan, credit_type) else paid_unheld
            result[credit_type] = {
                "available": available,
                "spendable": available - locked,
                "held": held,
                "allocation_remaining": allocation_unheld,
                "purchased_remaining": paid_unheld,
                "next_reset_at": allocation.period_end if allocation else None,
            }
        return result

    # ---------------------------------------------------------------- evolving

    def add_lot(
        self,
        *,
        lot_id: LotId,
        credit_type: str,
        source: str,
        amount: int,
        priority: int,
        at: datetime,
        expires_at: datetime | None,
        payment_reference: str | None,
        repaid_overdraft: int,
        repaid_debt: int,
    ) -> None:
        """New credits: what they repay of the overdraft and the debt never enters the lot."""
        self.lots.add(
            lot_id=lot_id,
            credit_type=credit_type,
            source=source,
            amount=amount,
            remaining=amount - repaid_overdraft - repaid_debt,
            priority=priority,
            effective_at=at,
            expires_at=expires_at,
            paid=source in PAID_SOURCES,
            payment_reference=payment_reference,
        )
        self.owed.add(credit_type, overdraft=-repaid_overdraft, debt=-repaid_debt)

    def start_allocation(self, e: AllocationGranted) -> None:
        self.add_lot(
            lot_id=e.lot_id,
            credit_type=e.credit_type,
            source="allocation",
            amount=e.amount,
            priority=e.priority,
            at=e.timestamp,
            expires_at=e.expires_at,
            payment_reference=None,
            repaid_overdraft=e.repaid_overdraft,
            repaid_debt=e.repaid_debt,
        )
        previous = self.allocations.start(
            AllocationState(
                credit_type=e.credit_type,
                period=e.period,  # type: ignore[arg-type]
                period_index=e.period_index,
                period_id=e.period_id,
                period_start=e.period_start,
                period_end=e.period_end,
                renewal=e.renewal,
                lot_id=e.lot_id,
                used_before=e.used_in_period,
            )
        )
        if previous is not None:
            self.lots.forget_if_spent(previous.lot_id, unless=self.allocations.is_current_lot)

    def close_lot(self, lot_id: LotId, forfeited: int) -> None:
        self.lots[lot_id].close(forfeited)
        self.lots.forget_if_spent(lot_id, unless=self.allocations.is_current_lot)

    def forget_spent(self, parts: Breakdown) -> None:
        for part in parts:
            self.lots.forget_if_spent(part["lot_id"], unless=self.allocations.is_current_lot)

    def open_hold(self, e: Reserved) -> None:
        parts: Breakdown = [part.copy() for part in e.breakdown]
        self.holds.add(Hold(e.hold_id, e.credit_type, e.amount, parts, e.expires_at, e.action))

    def capture_part(self, hold_id: str, captured: Breakdown) -> None:
        """Part of an open hold spent; the hold keeps the rest."""
        self.holds.take_part(hold_id, captured)
        self.lots.capture(captured)
        self.forget_spent(captured)

    def settle_hold(
        self, hold_id: str, outcome: HoldOutcome, captured: Breakdown, released: Breakdown
    ) -> None:
        """Captured parts are spent; released ones return to their lots (lost if closed)."""
        self.holds.close(hold_id, outcome, captured + released)
        self.lots.capture(captured)
        self.lots.release(released)
        self.forget_spent(captured + released)

    def after_event(self) -> None:
        self._rearm_low_balance()
        self._check_invariants()

    def _rearm_low_balance(self) -> None:
        if not self.low_balance_fired:
            return
        for credit_type, threshold in list(self.low_balance_fired.items()):
            if self.available(credit_type) > threshold:
                del self.low_balance_fired[credit_type]

    def _check_invariants(self) -> None:
        """Per lot `0 ≤ held ≤ remaining ≤ amount`, a closed lot keeps only its held part, each
        lot's `held` is the sum of the open holds' parts on it; each running allocation has its
        lot; a top-up is pending or failed, not both; what is owed is positive or absent."""
        self.lots.check(self.holds.held_per_lot())
        for credit_type, allocation in self.allocations.items():
            lot = self.lots.get(allocation.lot_id)
            assert lot is not None and lot.source == "allocation", (allocation, lot)
            assert lot.credit_type == credit_type, (allocation, lot)
        self.top_ups.check()
        self.owed.check()
