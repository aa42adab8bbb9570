"""A history of commands that writes every kind of account event, and the account's state in a
form that does not depend on how `Account` stores it.

`tests/unit/fixtures/account_streams_v1.json` holds what the account code of before the split
into value objects (domain/lots.py, holds.py, allocations.py, top_ups.py, usage.py) wrote for
this history: the stored events and snapshots (v1: the account's attributes as they were), the
reply JSON of every command, and `describe()` of every account. It was written once, by
`write_fixture` at commit 9c3e5b7, and must not be regenerated: it is what a database of
that time holds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain.account import Account
from domain.catalog import Catalog
from domain.top_ups import TopUpRequest

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "account_streams_v1.json"
CATALOG_FILE = "demo.toml"
START = datetime(2024, 1, 31, 10, 0, tzinfo=UTC)
ACCOUNTS = ("alice", "bob", "carol")
SNAPSHOT_INTERVAL = "5"

# Commands (account, type, fields) and clock moves. A `command_id` given in the fields is used
# as is (a retry, a conflict); the others are numbered in order.
Step = tuple[Any, ...]


def do(account: str, command_type: str, **fields: Any) -> Step:
    return (account, command_type, fields)


def at(when: datetime) -> Step:
    return ("at", when)


def advance(**delta: float) -> Step:
    return ("advance", delta)


# fmt: off
HISTORY: list[Step] = [
    # alice, pro: auto top-ups, purchases of every kind, holds, refunds into debt.
    do("alice", "open_account", plan="pro"),
    do("alice", "open_account", plan="pro"),  # account_exists
    do("alice", "consume", action="generate", quantity=2, resource="r1"),
    do("alice", "consume", credit_type="credits", amount=2700, metadata={"k": "v"}),
    do("alice", "consume", action="lookup", quantity=100, command_id="a-lookup"),
    do("alice", "consume", action="lookup", quantity=100, command_id="a-lookup"),  # duplicate
    do("alice", "consume", action="lookup", quantity=99,  # idempotency_conflict
       command_id="a-lookup"),
    do("alice", "purchase", credit_type="credits", top_up_id="tu-1", payment_reference="pi_a1",
       amount_paid=4000, currency="usd"),
    do("alice", "purchase", pack="credits_1000", payment_reference="pi_a2", amount_paid=4000,
       currency="USD"),
    do("alice", "purchase", pack="credits_1000", payment_reference="pi_a2b",  # not the price
       amount_paid=3999, currency="usd"),
    do("alice", "purchase", credit_type="credits", payment_reference="pi_a3", amount_paid=1000,
       currency="usd", amount=250),
    do("alice", "purchase", credit_type="credits",  # payment_reference used
       payment_reference="pi_a3", amount_paid=1000, currency="usd"),
    do("alice", "request_top_up", credit_type="credits", amount=100),
    do("alice", "request_top_up", credit_type="credits", amount=99),  # below min_credits
    do("alice", "fail_top_up", top_up_id="tu-2", reason="card_declined"),
    do("alice", "fail_top_up", top_up_id="tu-2", reason="card_declined"),  # not pending any more
    do("alice", "purchase", credit_type="credits", top_up_id="tu-2", payment_reference="pi_a4",
       amount_paid=400, currency="usd"),
    do("alice", "reserve", hold_id="h1", action="generate", quantity=5, ttl_seconds=600),
    do("alice", "reserve", hold_id="h1", action="generate", ttl_seconds=600),  # hold_id used
    do("alice", "reserve", hold_id="hx", action="generate",  # ttl above the catalog's
       ttl_seconds=7200),
    do("alice", "capture", hold_id="h1", amount=4),
    do("alice", "capture", hold_id="h1"),  # captured already
    do("alice", "reserve", hold_id="h2", credit_type="credits", amount=50, ttl_seconds=60),
    do("alice", "release", hold_id="h2"),
    do("alice", "reserve", hold_id="h3", credit_type="credits", amount=30, ttl_seconds=60),
    advance(minutes=2),
    do("alice", "expire"),
    do("alice", "capture", hold_id="h3"),  # hold_expired
    do("alice", "release", hold_id="nope"),  # hold_not_found
    do("alice", "consume", action="nope"),  # unknown_action
    do("alice", "revoke", payment_reference="pi_a3", reason="refund"),
    do("alice", "revoke", payment_reference="pi_a3", reason="refund"),  # fully revoked
    do("alice", "consume", credit_type="credits", amount=1500),
    do("alice", "revoke", payment_reference="pi_a2", reason="chargeback"),
    do("alice", "grant", credit_type="credits", amount=100, source="promotional"),
    do("alice", "consume", credit_type="credits", amount=1000000),  # insufficient_credits
    do("alice", "change_plan", plan="starter", effective="next_period"),
    do("alice", "change_plan", plan="gold"),  # unknown_plan
    at(datetime(2024, 2, 29, 10, 0, tzinfo=UTC)),
    do("alice", "expire"),
    do("alice", "configure_top_up", credit_type="credits", mode="auto", threshold=150, amount=200,
       max_per_month=2),
    do("alice", "configure_top_up", credit_type="credits",  # above max_per_month_limit
       mode="auto", threshold=150, amount=200, max_per_month=11),
    do("alice", "consume", credit_type="credits", amount=500),  # insufficient_credits
    do("alice", "consume", credit_type="credits", amount=10),
    do("alice", "configure_top_up", credit_type="credits", mode="off"),
    do("alice", "consume", credit_type="credits", amount=1),
    do("alice", "grant", credit_type="credits", amount=40, source="promotional",
       reference="promo-x"),
    do("alice", "reserve", hold_id="h4", credit_type="credits", amount=20, ttl_seconds=600),
    do("alice", "revoke", grant_id="lot-12", reason="admin"),  # the held part counts as spent
    do("alice", "capture", hold_id="h4", amount=5),  # the rest is forfeited
    do("alice", "consume", credit_type="credits", amount=1000000),  # insufficient_credits
    do("alice", "consume", credit_type="credits", amount=406),  # past the debt
    do("alice", "grant", credit_type="credits", amount=20, source="trial"),
    at(datetime(2024, 3, 1, 23, 30, tzinfo=UTC)),
    # bob, free: trial expiry, daily and resource limits, a free action, a forfeited hold,
    # renewals, a plan change that counts what was used, migration, admin grants.
    do("bob", "consume", action="lookup"),  # unknown_account
    do("bob", "open_account", plan="free"),
    do("bob", "reserve", hold_id="bh1", action="lookup", quantity=4, ttl_seconds=3600),
    do("bob", "reserve", hold_id="bh2", action="lookup",  # ttl above the catalog's
       ttl_seconds=3601),
    do("bob", "consume", action="generate", quantity=3),
    do("bob", "consume", action="generate", quantity=2),
    do("bob", "consume", action="generate"),  # daily_limit_reached
    do("bob", "consume", action="send_message", quantity=18, resource="chat"),
    do("bob", "consume", action="send_message", quantity=3,  # resource_limit_reached
       resource="chat"),
    do("bob", "consume", action="cached_lookup", quantity=3,  # free, still counted
       resource="web"),
    do("bob", "purchase", pack="messages_100", payment_reference="pi_b1", amount_paid=300,
       currency="usd"),
    do("bob", "purchase", pack="credits_1000", payment_reference="pi_b2",  # not_eligible
       amount_paid=4000, currency="usd"),
    do("bob", "purchase", credit_type="credits", payment_reference="pi_b3",  # not_eligible
       amount_paid=500, currency="usd"),
    at(datetime(2024, 3, 2, 0, 10, tzinfo=UTC)),
    do("bob", "release", hold_id="bh1"),  # forfeited: yesterday's lot
    do("bob", "renew", period_id="2024-03-02"),
    do("bob", "renew", period_id="2024-03-09"),  # not started
    do("bob", "consume", action="lookup", quantity=7),
    advance(days=14),
    do("bob", "renew", period_id="2024-03-16"),
    do("bob", "consume", action="generate", quantity=2),
    do("bob", "change_plan", plan="starter"),
    do("bob", "migrate", tier="legacy_plus"),
    do("bob", "migrate", tier="legacy_basic"),  # not_eligible
    do("bob", "migrate", tier="legacy_gold"),  # unknown tier
    do("bob", "grant", credit_type="storage", amount=40, source="admin",
       expires_at="2024-04-01T00:00:00+02:00", priority=1, reference="ticket-9"),
    do("bob", "revoke", grant_id="lot-11", amount=15, reason="admin"),
    do("bob", "revoke", grant_id="lot-1", reason="admin"),  # allocations are not revocable
    do("bob", "consume", action="upload", quantity=30),
    do("bob", "change_plan", plan="starter"),  # on it already
    at(datetime(2024, 3, 20, 8, 0, tzinfo=UTC)),
    # carol, starter: rollover over skipped periods, stacked adds, a replaced schedule, an auto
    # top-up configured by hand that fails and stays capped, an overdraft.
    do("carol", "open_account", plan="starter"),
    do("carol", "consume", action="generate", quantity=20),
    do("carol", "consume", action="send_message", quantity=50),
    do("carol", "change_plan", plan="free", effective="next_period"),
    do("carol", "change_plan", plan="pro", effective="next_period"),
    do("carol", "change_plan", plan="starter"),
    at(datetime(2024, 5, 21, 8, 0, tzinfo=UTC)),
    do("carol", "expire"),
    do("carol", "configure_top_up", credit_type="credits", mode="auto", threshold=400, amount=100,
       max_per_month=1),
    do("carol", "consume", action="lookup", quantity=500),
    do("carol", "consume", action="lookup", quantity=10),
    do("carol", "fail_top_up", top_up_id="tu-1", reason="expired_card",
       recovery_url="https://pay.example/tu-1"),
    do("carol", "consume", action="lookup", quantity=10),
    do("carol", "reserve", hold_id="ch1", action="upload", quantity=10, ttl_seconds=3600),
    do("carol", "purchase", credit_type="credits", payment_reference="pi_c1",  # above max_cents
       amount_paid=100000, currency="usd"),
    do("carol", "purchase", credit_type="credits",  # not the plan's currency
       payment_reference="pi_c1", amount_paid=500, currency="eur"),
    do("carol", "purchase", credit_type="credits", payment_reference="pi_c1",  # not what it buys
       amount_paid=500, currency="usd", amount=99),
    do("carol", "grant", credit_type="storage", amount=30, source="admin",
       expires_at="2024-05-21T08:10:00Z", priority=0),
    do("carol", "reserve", hold_id="ch2", action="upload", quantity=20, ttl_seconds=3600),
    advance(minutes=15),
    do("carol", "capture", hold_id="ch2", amount=5),  # from a lot that expired
    do("carol", "consume", credit_type="credits", amount=250),  # 20 beyond the lots
    do("carol", "grant", credit_type="credits", amount=5, source="trial"),
]
# fmt: on


def run(ledger: Any) -> list[str]:
    """Runs the history on a `tests/kit/ledger.py` Ledger; the reply JSON of every command."""
    replies = []
    for account, *rest in HISTORY:
        if account == "advance":
            ledger.clock.advance(**rest[0])
            continue
        if account == "at":
            ledger.clock.set(rest[0])
            continue
        command_type, fields = rest
        reply = ledger.send(command_type, account, **fields)
        replies.append(reply.model_dump_json(exclude=_ADDED_REPLY_FIELDS))
    return replies


def describe(account: Account, catalog: Catalog) -> dict[str, Any]:
    """Everything the account knows, as JSON, in a form of its own (not the attributes')."""
    lots = {
        lot.lot_id: {
            "seq": lot.seq,
            "credit_type": lot.credit_type,
            "source": lot.source,
            "amount": lot.amount,
            "remaining": lot.remaining,
            "held": lot.held,
            "priority": lot.priority,
            "effective_at": lot.effective_at,
            "expires_at": lot.expires_at,
            "paid": lot.paid,
            "payment_reference": lot.payment_reference,
            "revoked": lot.revoked,
            "closed": lot.closed,
        }
        for lot in account.lots.values()
    }
    holds = {
        hold.hold_id: {
            "credit_type": hold.credit_type,
            "amount": hold.amount,
            "parts": [[p["lot_id"], p["amount"]] for p in hold.parts],
            "expires_at": hold.expires_at,
            "action": hold.action,
        }
        for hold in account.holds.values()
    }
    allocations = {
        ct: {
            "period": a.period,
            "period_index": a.period_index,
            "period_id": a.period_id,
            "period_start": a.period_start,
            "period_end": a.period_end,
            "renewal": a.renewal,
            "lot_id": a.lot_id,
            "used_before": a.used_before,
        }
        for ct, a in account.allocations.items()
    }

    def top_up(r: TopUpRequest) -> list[Any]:
        return [r.credit_type, r.amount, r.price_cents, r.currency, r.trigger]

    top_ups = account.top_ups
    scheduled = account.scheduled_plan
    state = {
        "version": account.version,
        "created_on": account.created_on,
        "modified_on": account.modified_on,
        "plan": account.plan,
        "catalog_version": account.catalog_version,
        "anchor_at": account.anchor_at,
        "lot_seq": account.lots.seq,
        "lots": lots,
        "allocations": allocations,
        "holds": holds,
        "closed_holds": dict(account.holds.closed),
        "overdraft": dict(account.owed.overdraft),
        "debt": dict(account.owed.debt),
        "low_balance_fired": dict(account.low_balance_fired),
        "usage": [account.usage.day, account.usage.by_action, account.usage.by_resource],
        "top_up_settings": {
            ct: [s.mode, s.threshold, s.amount, s.max_per_month]
            for ct, s in top_ups.settings.items()
        },
        "pending_top_ups": {k: top_up(v) for k, v in top_ups.pending.items()},
        "failed_top_ups": {k: top_up(v) for k, v in top_ups.failed.items()},
        "auto_top_ups": {ct: [c.month, c.count] for ct, c in top_ups.auto_requested.items()},
        "top_up_seq": top_ups.seq,
        "scheduled_plan": None if scheduled is None else [scheduled.plan, scheduled.effective_at],
        "migrated_from": account.migrated_from,
        "purchases": dict(account.purchases),
        "next_due_at": account.next_due_at(),
        # Fields added to balances since the fixture was written (`spendable`, derived from the
        # lots and the plan compared here) are left out: the fixture is never regenerated.
        "balances": {
            ct: {k: v for k, v in b.items() if k in _FIXTURE_BALANCE_FIELDS}
            for ct, b in account.balances(catalog).items()
        },
        "lots_total": {ct: account.lots_total(ct) for ct in catalog.credit_types},
    }
    return _json(state)


_FIXTURE_BALANCE_FIELDS = (
    "available",
    "held",
    "allocation_remaining",
    "purchased_remaining",
    "next_reset_at",
)


# The same for replies: balances fields added since (the fixture holds replies as JSON text).
_ADDED_REPLY_FIELDS: Any = {"balances": {"__all__": {"spendable"}}}


def _json(value: Any) -> Any:
    """JSON round trip, datetimes as ISO-8601: what the fixture file can hold."""
    return json.loads(json.dumps(value, default=lambda v: v.isoformat(), sort_keys=True))


def write_fixture(ledger: Any, replies: list[str]) -> None:
    """Writes FIXTURE from a Ledger that ran `run` (in-memory store, SNAPSHOT_INTERVAL)."""
    recorder = ledger.app.recorder
    snapshots = ledger.app.snapshots.recorder

    def stored(records: Any) -> list[dict[str, Any]]:
        return [
            {
                "originator_id": r.originator_id,
                "originator_version": r.originator_version,
                "topic": r.topic,
                "state": r.state.decode(),
            }
            for r in records
        ]

    data = {
        "catalog": CATALOG_FILE,
        "replies": replies,
        "events": stored(e for a in ACCOUNTS for e in recorder.select_events(a)),
        "snapshots": stored(s for a in ACCOUNTS for s in snapshots.select_events(a)),
        "accounts": {a: describe(ledger.account(a), ledger.catalog) for a in ACCOUNTS},
    }
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
