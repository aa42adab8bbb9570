"""Random command sequences through LedgerService, with time jumping across day, month-end,
leap-day and anniversary boundaries. After every step, for every account:

- the account the service holds equals the fold of its stored events;
- the lots reconcile with the ledger facts: Σ remaining = credits in - credits out, per type;
- available never sits below the overdraft floor (refund debt aside);
- a rejected command wrote nothing; a retried command_id changed nothing and answered with the
  original result; the same command_id with another payload was refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.account import Account
from domain.catalog import load_catalog
from domain.periods import add_months_clamped
from tests.kit.clock import SettableClock
from tests.kit.ledger import Ledger

CATALOG = load_catalog(Path(__file__).resolve().parents[2] / "domain" / "catalogs" / "demo.toml")
ACCOUNTS = ("a", "b")
PLANS = ("free", "starter", "pro")
CREDIT_TYPES = tuple(CATALOG.credit_types)
ACTIONS = tuple(CATALOG.actions)
STARTS = (
    datetime(2024, 1, 31, 10, 0, tzinfo=UTC),
    datetime(2023, 1, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2024, 2, 28, 12, 0, tzinfo=UTC),
    datetime(2024, 2, 29, 0, 0, tzinfo=UTC),
    datetime(2024, 12, 31, 23, 0, tzinfo=UTC),
)


class LedgerMachine(RuleBasedStateMachine):
    @initialize(
        start=st.sampled_from(STARTS), plan=st.sampled_from(PLANS), other=st.sampled_from(PLANS)
    )
    def open_accounts(self, start: datetime, plan: str, other: str) -> None:
        self.ledger = Ledger(CATALOG, SettableClock(start), LEDGER_SNAPSHOT_INTERVAL="7")
        self.clock = self.ledger.clock
        self.sent = 0
        self.sent_commands: list[dict[str, Any]] = []
        self.accepted: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
        self.holds: list[tuple[str, str]] = []
        self.paid: list[tuple[str, str]] = []
        self.lots: list[tuple[str, str]] = []
        self.top_ups: list[tuple[str, str]] = []
        self.send("open_account", "a", plan=plan)
        self.clock.advance(hours=7)  # another anniversary time of day
        self.send("open_account", "b", plan=other)

    # ------------------------------------------------------------ driving

    def send(self, type: str, account: str, **fields: Any) -> Any:
        self.sent += 1
        return self.deliver(self.ledger.command(type, account, f"c{self.sent}", **fields))

    def deliver(self, command: dict[str, Any]) -> Any:
        account = command["account_id"]
        key = (account, command["command_id"])
        before = self.ledger.version(account)
        (reply,) = self.ledger.apply([command])
        after = self.ledger.version(account)
        if key in self.accepted:
            payload, result = self.accepted[key]
            if payload == command:
                assert reply.status == "duplicate", reply
                assert reply.result == result
            else:
                assert reply.error is not None and reply.error.code == "idempotency_conflict"
            assert after == before, "a retry must change nothing"
        elif reply.status == "rejected":
            assert after == before, f"rejected {command} wrote events: {reply.error}"
        else:
            assert reply.status == "accepted", reply
            self.accepted[key] = (dict(command), reply.result)
            stored = self.ledger.fold(account).balances(CATALOG)
            assert {ct: b.model_dump() for ct, b in reply.balances.items()} == stored
        self.sent_commands.append(command)
        return reply

    # ------------------------------------------------------------ rules

    @rule(plan=st.sampled_from(PLANS))
    def open_second_account(self, plan: str) -> None:
        self.send("open_account", "b", plan=plan)

    @rule(
        account=st.sampled_from(ACCOUNTS),
        action=st.sampled_from(ACTIONS),
        quantity=st.integers(1, 4),
        resource=st.sampled_from([None, "qr-1", "qr-2"]),
    )
    def consume_action(
        self, account: str, action: str, quantity: int, resource: str | None
    ) -> None:
        fields: dict[str, Any] = {"action": action, "quantity": quantity}
        if resource:
            fields["resource"] = resource
        self.send("consume", account, **fields)

    @rule(
        account=st.sampled_from(ACCOUNTS),
        credit_type=st.sampled_from(CREDIT_TYPES),
        amount=st.integers(1, 400),
    )
    def consume_amount(self, account: str, credit_type: str, amount: int) -> None:
        self.send("consume", account, credit_type=credit_type, amount=amount)

    @rule(
        account=st.sampled_from(ACCOUNTS),
        credit_type=st.sampled_from(CREDIT_TYPES),
        amount=st.integers(1, 300),
        ttl_seconds=st.sampled_from([60, 1800, 3600]),
    )
    def reserve(self, account: str, credit_type: str, amount: int, ttl_seconds: int) -> None:
        hold_id = f"h{self.sent}"
        reply = self.send(
            "reserve",
            account,
            hold_id=hold_id,
            credit_type=credit_type,
            amount=amount,
            ttl_seconds=ttl_seconds,
        )
        if reply.status == "accepted":
            self.holds.append((account, hold_id))

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data(), part=st.sampled_from([None, 0, 1, 10, 1000]))
    def capture(self, data: st.DataObject, part: int | None) -> None:
        account, hold_id = data.draw(st.sampled_from(self.holds))
        fields = {} if part is None else {"amount": part}
        self.send("capture", account, hold_id=hold_id, **fields)

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data(), part=st.sampled_from([0, 1, 10, 1000]))
    def capture_a_part(self, data: st.DataObject, part: int) -> None:
        account, hold_id = data.draw(st.sampled_from(self.holds))
        self.send("capture", account, hold_id=hold_id, amount=part, final=False)

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data(), ttl_seconds=st.sampled_from([30, 1800, 7200]))
    def extend_hold(self, data: st.DataObject, ttl_seconds: int) -> None:
        account, hold_id = data.draw(st.sampled_from(self.holds))
        self.send("extend_hold", account, hold_id=hold_id, ttl_seconds=ttl_seconds)

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        account, hold_id = data.draw(st.sampled_from(self.holds))
        self.send("release", account, hold_id=hold_id)

    @rule(
        account=st.sampled_from(ACCOUNTS),
        credit_type=st.sampled_from(CREDIT_TYPES),
        amount=st.integers(1, 500),
        source=st.sampled_from(["promotional", "trial", "admin"]),
        expires_in_hours=st.sampled_from([None, 1, 30]),
    )
    def grant(
        self,
        account: str,
        credit_type: str,
        amount: int,
        source: str,
        expires_in_hours: int | None,
    ) -> None:
        fields: dict[str, Any] = {"credit_type": credit_type, "amount": amount, "source": source}
        if expires_in_hours is not None:
            expires_at = self.clock.now() + timedelta(hours=expires_in_hours)
            fields["expires_at"] = expires_at.isoformat()
        reply = self.send("grant", account, **fields)
        if reply.status == "accepted":
            self.lots.append((account, reply.result["lot_id"]))

    @rule(account=st.sampled_from(ACCOUNTS), pack=st.sampled_from(sorted(CATALOG.packs)))
    def buy_pack(self, account: str, pack: str) -> None:
        reference = f"pi_{self.sent}"
        price = CATALOG.packs[pack].price_cents
        reply = self.send(
            "purchase",
            account,
            pack=pack,
            payment_reference=reference,
            amount_paid=price,
            currency="usd",
        )
        if reply.status == "accepted":
            self.paid.append((account, reference))

    @rule(account=st.sampled_from(ACCOUNTS), amount_paid=st.sampled_from([499, 500, 1234, 60000]))
    def buy_amount(self, account: str, amount_paid: int) -> None:
        reference = f"pi_{self.sent}"
        reply = self.send(
            "purchase",
            account,
            credit_type="credits",
            payment_reference=reference,
            amount_paid=amount_paid,
            currency="usd",
        )
        if reply.status == "accepted":
            self.paid.append((account, reference))

    @precondition(lambda self: bool(self.paid or self.lots))
    @rule(data=st.data(), amount=st.sampled_from([None, 1, 50, 5000]))
    def revoke(self, data: st.DataObject, amount: int | None) -> None:
        fields: dict[str, Any] = {} if amount is None else {"amount": amount}
        if self.paid and (not self.lots or data.draw(st.booleans())):
            account, reference = data.draw(st.sampled_from(self.paid))
            fields["payment_reference"] = reference
        else:
            account, lot_id = data.draw(st.sampled_from(self.lots))
            fields["grant_id"] = lot_id
        self.send(
            "revoke", account, reason=data.draw(st.sampled_from(["refund", "chargeback"])), **fields
        )

    @rule(account=st.sampled_from(ACCOUNTS), days_back=st.sampled_from([0, 1, 31]))
    def renew(self, account: str, days_back: int) -> None:
        period_id = (self.clock.now() - timedelta(days=days_back)).date().isoformat()
        self.send("renew", account, period_id=period_id)

    @rule(account=st.sampled_from(ACCOUNTS))
    def expire(self, account: str) -> None:
        self.send("expire", account)

    @rule(
        account=st.sampled_from(ACCOUNTS),
        plan=st.sampled_from(PLANS),
        effective=st.sampled_from(["now", "next_period"]),
    )
    def change_plan(self, account: str, plan: str, effective: str) -> None:
        self.send("change_plan", account, plan=plan, effective=effective)

    @rule(account=st.sampled_from(ACCOUNTS), mode=st.sampled_from(["off", "auto"]))
    def configure_top_up(self, account: str, mode: str) -> None:
        fields: dict[str, Any] = {"credit_type": "credits", "mode": mode}
        if mode == "auto":
            fields |= {"threshold": 150, "amount": 200, "max_per_month": 2}
        self.send("configure_top_up", account, **fields)

    @rule(account=st.sampled_from(ACCOUNTS), amount=st.sampled_from([50, 100, 300]))
    def request_top_up(self, account: str, amount: int) -> None:
        self.send("request_top_up", account, credit_type="credits", amount=amount)

    @rule(account=st.sampled_from(ACCOUNTS), succeed=st.booleans())
    def settle_top_up(self, account: str, succeed: bool) -> None:
        if self.ledger.version(account) is None:
            return
        pending = self.ledger.fold(account).pending_top_ups
        if not pending:
            return
        top_up_id, request = sorted(pending.items())[0]
        if succeed:
            self.send(
                "purchase",
                account,
                credit_type=request.credit_type,
                top_up_id=top_up_id,
                payment_reference=f"pi_{self.sent}",
                amount_paid=request.price_cents,
                currency=request.currency,
            )
        else:
            self.send("fail_top_up", account, top_up_id=top_up_id, reason="card_declined")

    @precondition(lambda self: bool(self.sent_commands))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        self.deliver(dict(data.draw(st.sampled_from(self.sent_commands))))

    @precondition(lambda self: any(c["type"] == "consume" for c, _ in self.accepted.values()))
    @rule(data=st.data())
    def reuse_command_id_with_another_payload(self, data: st.DataObject) -> None:
        consumes = [c for c, _ in self.accepted.values() if c["type"] == "consume"]
        command = dict(data.draw(st.sampled_from(consumes)))
        command["quantity"] = command.get("quantity", 1) + 1
        self.deliver(command)

    @rule(
        jump=st.sampled_from(["seconds", "midnight", "anniversary", "days", "leap_day"]),
        offset_seconds=st.sampled_from([-1, 0, 1, 7]),
        seconds=st.integers(1, 7200),
        days=st.integers(1, 45),
    )
    def advance_clock(self, jump: str, offset_seconds: int, seconds: int, days: int) -> None:
        now = self.clock.now()
        if jump == "seconds":
            target = now + timedelta(seconds=seconds)
        elif jump == "days":
            target = now + timedelta(days=days)
        elif jump == "midnight":
            next_midnight = datetime.combine(now.date() + timedelta(days=1), now.time().min, UTC)
            target = next_midnight + timedelta(seconds=offset_seconds)
        elif jump == "leap_day":
            leap = datetime(2024, 2, 29, tzinfo=UTC) if now.year <= 2024 else now
            target = leap + timedelta(seconds=offset_seconds)
        else:
            anchor = self.ledger.fold("a").anchor_at
            months = 1
            while add_months_clamped(anchor, months) <= now:
                months += 1
            target = add_months_clamped(anchor, months) + timedelta(seconds=offset_seconds)
        self.clock.set(max(now, target))

    # ------------------------------------------------------------ invariants

    @invariant()
    def every_account_is_the_fold_of_its_events_and_reconciles(self) -> None:
        for account_id in ACCOUNTS:
            if self.ledger.version(account_id) is None:
                continue
            folded = self.ledger.fold(account_id)
            assert self.ledger.account(account_id) == folded
            expected = _reconcile(self.ledger.events(account_id))
            for ct, spec in CATALOG.credit_types.items():
                lots_in, overdraft, debt = expected.get(ct, (0, 0, 0))
                assert folded.lots_total(ct) == lots_in, (ct, folded.lots)
                assert folded.owed.overdraft.get(ct, 0) == overdraft
                assert folded.owed.debt.get(ct, 0) == debt
                available = folded.available(ct)
                assert available == lots_in - folded.held(ct) - overdraft - debt
                assert available + debt >= spec.overdraft_floor
                assert folded.held(ct) == sum(
                    h.amount for h in folded.holds.values() if h.credit_type == ct
                )


def _reconcile(events: Any) -> dict[str, tuple[int, int, int]]:
    """Σ lots, overdraft and debt per credit type, from the events' own figures alone."""
    lots: dict[str, int] = {}
    overdraft: dict[str, int] = {}
    debt: dict[str, int] = {}

    def add(table: dict[str, int], ct: str, amount: int) -> None:
        table[ct] = table.get(ct, 0) + amount

    for e in events:
        if isinstance(e, Account.Granted | Account.AllocationGranted):
            add(lots, e.credit_type, e.amount - e.repaid_overdraft - e.repaid_debt)
            add(overdraft, e.credit_type, -e.repaid_overdraft)
            add(debt, e.credit_type, -e.repaid_debt)
        if isinstance(e, Account.Renewed) and e.renewal != "add":
            add(lots, e.credit_type, -e.forfeited)
        if isinstance(e, Account.Consumed):
            add(lots, e.credit_type, -(e.amount - e.overdraft_added))
            add(overdraft, e.credit_type, e.overdraft_added)
        if isinstance(e, Account.Captured):
            add(lots, e.credit_type, -e.amount - e.forfeited)
        if isinstance(e, Account.PartCaptured):
            add(lots, e.credit_type, -e.amount)
        if isinstance(e, Account.Released):
            add(lots, e.credit_type, -e.forfeited)
        if isinstance(e, Account.LotExpired):
            add(lots, e.credit_type, -e.amount)
        if isinstance(e, Account.Revoked):
            add(lots, e.credit_type, -e.unspent_revoked - e.forfeited)
            add(debt, e.credit_type, e.debt_added)
        if isinstance(e, Account.PlanChanged):
            for closed in e.closed_allocations:
                add(lots, closed["credit_type"], -closed["forfeited"])
    return {ct: (lots.get(ct, 0), overdraft.get(ct, 0), debt.get(ct, 0)) for ct in lots}


LedgerMachine.TestCase.settings = settings(
    max_examples=1000,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_ledger_state_machine = LedgerMachine.TestCase
