"""Account streams holding every event kind with extreme field values, and ways to store them.

The events are triggered on a real `Account`, so each is one the aggregate can fold (its
invariants are checked as they are made), but their values are what no command produces today:
NUL and lone surrogates in every text field, text far beyond the validated lengths, amounts at
and past bigint's range, timestamps at the ends of Python's range and in far time zones, days
that are no dates, empty lists and maps. They are stored as another writer (an older version, a
bug) could have stored them: JSON with `\\u` escapes, which PostgreSQL's bytea takes as is.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from eventsourcing.persistence import StoredEvent

from domain.account import Account
from domain.catalog import MAX_AMOUNT
from infra.ledger_application import LedgerApplication

# Every event kind the aggregate defines, read from the code: a new kind is covered or the
# coverage test fails.
EVENT_KINDS = frozenset(
    cls
    for cls in vars(Account).values()
    if isinstance(cls, type) and issubclass(cls, Account.Event) and cls is not Account.Event
)

EXTREME_TEXTS = (
    "\x00",
    "pi_\x00abc",
    "\ud800",
    "x\udfff\x00y",
    "\\u0000",  # what an escaped NUL looks like: must stay a different value
    "é" * 300,  # 600 bytes: past the key bound
    "z" * 10_000,  # far past every validated length
    "😀" * 300,
    "😀" * 256,  # a payment reference at its validated maximum: 1,024 bytes, kept as it is
    "",
    "plain",
)
EXTREME_AMOUNTS = (10, MAX_AMOUNT, 2**63 + 1, 10**30)
EXTREME_TIMES = (
    datetime(1, 1, 1, tzinfo=UTC),
    datetime.max.replace(tzinfo=UTC),
    # Past what Python can express in UTC: year 0 and year 10000.
    datetime(1, 1, 1, 6, tzinfo=timezone(timedelta(hours=14))),
    datetime(9999, 12, 31, 20, tzinfo=timezone(timedelta(hours=-14))),
    datetime(2024, 2, 29, 12, 30, tzinfo=UTC),
)
EXTREME_DAYS = ("0001-01-01", "9999-12-31", "2024-02-29", "", "not a day", "2024-13-45")


@dataclass(frozen=True)
class Extremes:
    text: str
    # A second value, different from `text` (a second credit type, hold, top-up).
    other_text: str
    amount: int
    at: datetime
    day: str


def account_id(suffix: str = "") -> str:
    """Unique; the event store's text key takes any suffix (up to its index's size)."""
    return f"extreme-{uuid.uuid4().hex[:12]}{suffix}"


def extreme_stream(stream_id: str, x: Extremes) -> list[Account.Event]:
    """Every event kind, once at least, with `x`'s values, in an order the aggregate folds."""
    assert x.text != x.other_text and x.amount >= 10
    a, t, u = x.amount, x.text, x.other_text
    ct, ct2 = t, u
    account = Account._create(
        Account.Opened, id=stream_id, timestamp=x.at, command_id=t, plan=t, catalog_version=t
    )

    def emit(cls: type[Any], **fields: Any) -> None:
        account.trigger_event(cls, timestamp=x.at, command_id=t, **fields)

    allocation = {
        "amount": a,
        "period": t,
        "period_index": a,
        "period_id": t,
        "period_start": x.at,
        "period_end": x.at,
        "renewal": "reset",
        "expires_at": x.at,
        "repaid_overdraft": 0,
        "repaid_debt": 0,
        "reason": t,
        "catalog_version": t,
        "used_in_period": a,
        "plan": t,
    }
    emit(Account.AllocationGranted, credit_type=ct, lot_id="lot-1", priority=a, **allocation)
    grant = {
        "credit_type": ct,
        "amount": a,
        "priority": 0,
        "repaid_overdraft": 0,
        "repaid_debt": 0,
        "catalog_version": t,
    }
    emit(
        Account.Granted,
        lot_id="lot-2",
        source="purchase",
        expires_at=None,
        paid=True,
        payment_reference=t,
        amount_paid_cents=a,
        currency=t,
        pack=t,
        reference=t,
        top_up_id=t,
        migration_tier=t,
        **grant,
    )
    spend = {"credit_type": ct, "day": x.day, "catalog_version": t}
    emit(
        Account.Consumed,
        action=t,
        quantity=a,
        amount=3,
        tags=[t, u, ""],
        resource=t,
        metadata={t: t, "n": a, "none": None},
        breakdown=[{"lot_id": "lot-1", "amount": 3}],
        overdraft_added=0,
        **spend,
    )
    # An empty breakdown: all of it overdrawn; empty tags and metadata.
    emit(
        Account.Consumed,
        action=None,
        quantity=1,
        amount=2,
        tags=[],
        resource=None,
        metadata={},
        breakdown=[],
        overdraft_added=2,
        **spend,
    )
    holds = [t, u, f"{t}|{u}"]

    def reserve(hold_id: str, amount: int) -> None:
        emit(
            Account.Reserved,
            hold_id=hold_id,
            action=u,
            quantity=a,
            amount=amount,
            resource=None,
            breakdown=[{"lot_id": "lot-2", "amount": amount}],
            expires_at=x.at,
            **spend,
        )

    reserve(holds[0], 4)
    # A streaming hold: a part captured, the expiry extended (to the same extreme time), the
    # rest captured.
    emit(
        Account.PartCaptured,
        hold_id=holds[0],
        credit_type=ct,
        amount=1,
        breakdown=[{"lot_id": "lot-2", "amount": 1}],
    )
    emit(Account.HoldExtended, hold_id=holds[0], expires_at=x.at)
    emit(
        Account.Captured,
        hold_id=holds[0],
        credit_type=ct,
        amount=2,
        breakdown=[{"lot_id": "lot-2", "amount": 2}],
        released=[{"lot_id": "lot-2", "amount": 1}],
        forfeited=0,
    )
    for hold_id, kind in ((holds[1], Account.Released), (holds[2], Account.HoldExpired)):
        reserve(hold_id, 2)
        emit(
            kind,
            hold_id=hold_id,
            credit_type=ct,
            amount=2,
            breakdown=[{"lot_id": "lot-2", "amount": 2}],
            forfeited=0,
        )
    emit(
        Account.Revoked,
        lot_id="lot-2",
        credit_type=ct,
        payment_reference=t,
        amount=5,
        unspent_revoked=5,
        policy=t,
        forgiven=0,
        debt_added=a,
        forfeited=0,
        reason=t,
    )
    emit(
        Account.Granted,
        lot_id="lot-3",
        source=t,
        expires_at=x.at,
        paid=False,
        payment_reference=None,
        amount_paid_cents=None,
        currency=None,
        pack=None,
        reference=None,
        top_up_id=None,
        migration_tier=None,
        **grant,
    )
    emit(Account.LotExpired, lot_id="lot-3", credit_type=ct, amount=a, expires_at=x.at)
    emit(Account.LowBalance, credit_type=ct, available=-a, threshold=a)
    emit(Account.TopUpConfigured, credit_type=ct, mode=t, threshold=a, amount=None, max_per_month=a)
    emit(Account.ResourceLimitSet, resource=t, daily_limit=a, plan_limit=None)
    emit(Account.ResourceLimitSet, resource=u, daily_limit=0, plan_limit=a)
    emit(Account.ResourceLimitSet, resource=u, daily_limit=None, plan_limit=a)
    for top_up_id in (t, u):
        emit(
            Account.TopUpRequested,
            top_up_id=top_up_id,
            credit_type=ct,
            amount=a,
            price_cents=a,
            currency=t,
            trigger="auto",
            month=t,
            idempotency_key=t,
            catalog_version=t,
        )
    emit(
        Account.TopUpCompleted,
        top_up_id=t,
        credit_type=ct,
        credits_added=a,
        amount_charged_cents=a,
        currency=t,
        lot_id=t,
    )
    emit(Account.TopUpFailed, top_up_id=u, credit_type=ct, reason=t, recovery_url=t)
    emit(Account.PlanChangeScheduled, plan=t, effective_at=x.at)
    emit(
        Account.Renewed,
        credit_type=ct,
        lot_id="lot-4",
        priority=0,
        previous_lot_id="lot-1",
        periods_elapsed=a,
        forfeited=account.lots["lot-1"].unheld,
        carried_over=0,
        **allocation,
    )
    emit(Account.AllocationGranted, credit_type=ct2, lot_id="lot-5", priority=0, **allocation)
    closed = [{"credit_type": ct2, "lot_id": "lot-5", "forfeited": a}]
    emit(Account.PlanChanged, from_plan=t, to_plan=u, effective=t, closed_allocations=closed)
    emit(Account.PlanChanged, from_plan=u, to_plan=t, effective=u, closed_allocations=[])
    return [e for e in account.collect_events() if isinstance(e, Account.Event)]


def overdrawn_stream(account: str, events: int) -> list[Account.Event]:
    """`events` spends of MAX_AMOUNT each, all overdrawn on one day: sums past bigint's range
    (balance, overdraft, the day's usage, the running available, credits outstanding)."""
    at = datetime(2024, 2, 29, 12, tzinfo=UTC)
    created = Account._create(
        Account.Opened, id=account, timestamp=at, command_id=None, plan="free", catalog_version="v"
    )
    for n in range(events):
        created.trigger_event(
            Account.Consumed,
            timestamp=at,
            command_id=f"c{n}",
            action="generate",
            credit_type="credits",
            quantity=1,
            amount=MAX_AMOUNT,
            tags=[],
            resource=None,
            metadata={},
            breakdown=[],
            overdraft_added=MAX_AMOUNT,
            day="2024-02-29",
            catalog_version="v",
        )
    return [e for e in created.collect_events() if isinstance(e, Account.Event)]


class RawStore:
    """Stores events as they are, through the ledger's recorder (notification ids, NOTIFY)."""

    def __init__(self, app: LedgerApplication) -> None:
        self.app = app
        transcoder: Any = app.mapper.transcoder
        # ASCII JSON: lone surrogates as `\\udXXX` escapes (the library's encoder would fail on
        # them before the database saw them; another writer's need not).
        self._encoder = json.JSONEncoder(
            default=transcoder._encode_obj, separators=(",", ":"), ensure_ascii=True
        )

    def stored(self, event: Account.Event, **extra: Any) -> StoredEvent:
        """The event as the mapper stores it (`Mapper.to_stored_event`), plus `extra` fields."""
        fields = dict(vars(event))
        originator_id = fields.pop("originator_id")
        originator_version = fields.pop("originator_version")
        fields.update(extra)
        cls = type(event)
        return StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=f"{cls.__module__}:{cls.__qualname__}",
            state=self._encoder.encode(fields).encode(),
        )

    def insert(self, stored: list[StoredEvent]) -> None:
        self.app.recorder.insert_events(stored)
