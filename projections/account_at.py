"""An account as the ledger recorded it at an instant: its stored events up to that instant,
folded by the domain aggregate (domain/account.py). Never the read models.

"At T" means the ledger's state as recorded at T: every event whose timestamp is at or before
T (an event at exactly T counts), nothing after. Time-based effects are events like any other:
a lot whose expiry passed before T, but whose `LotExpired` the ledger wrote only after T (at
the next command or scheduler tick for the account), still counts at T, and is shown with
`past_expiry: true`; the same holds for a hold past its `expires_at`, a period that ended,
a scheduled plan change that was due.

Timestamps only grow along a stream (the aggregate asserts it), so the events up to T are a
prefix of the stream. A snapshot may stand in for the prefix it covers, but only if the last
event it covers is at or before T (its `_modified_on`): a snapshot taken after T is skipped.
At most one snapshot interval of events is then read past the snapshot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from eventsourcing.persistence import Mapper, StoredEvent

from domain.account import Account
from domain.catalog import Catalog

EVENTS_TABLE = "ledger_events"
SNAPSHOTS_TABLE = "ledger_snapshots"
# Rows read per query, and a bound on the queries of one read (2**20 * 256 rows: any stream).
PAGE_ROWS = 256
MAX_PAGES = 2**20
RESERVED_TOPIC = "domain.account:Account.Reserved"

# RFC 3339 (`T` or `t`, an offset or `Z`); a space where the offset's `+` was is taken as `+`
# (an unencoded `+` in a query string arrives as a space).
_RFC_3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"([Zz]|[+ -][0-9]{2}:[0-9]{2})$"
)


class AsOfInvalid(ValueError):
    """Not an RFC 3339 time with an offset."""


class AsOfInFuture(ValueError):
    """A time after now: the ledger has recorded nothing for it yet."""


def parse_as_of(text: str, now: datetime) -> datetime:
    """The instant `text` names, in UTC; `AsOfInvalid` or `AsOfInFuture` otherwise."""
    if len(text) > 40 or not _RFC_3339.match(text):
        raise AsOfInvalid("an RFC 3339 time with an offset, e.g. 2026-01-31T10:00:00Z")
    normal = text[:19] + text[19:].replace(" ", "+")
    try:
        at = datetime.fromisoformat(normal.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        raise AsOfInvalid("not a valid date and time") from None
    if at > now:
        raise AsOfInFuture(f"{at.isoformat()} is after now ({now.isoformat()})")
    return at


@dataclass
class FoldAt:
    """Folds stored rows into the account as of `at`: a snapshot (if one fits), then events."""

    mapper: Mapper[Any]
    at: datetime
    account: Account | None = None
    # Position (notification id) of the last event folded, when known.
    position: int | None = None
    # When each hold folded here was reserved: holds carry no time of their own.
    reserved_at: dict[str, datetime] = field(default_factory=dict)

    def start_from(self, snapshot: StoredEvent) -> bool:
        """Starts from this snapshot if everything it covers happened at or before `at`."""
        assert self.account is None, "a snapshot starts the fold"
        decoded: Any = self.mapper.to_domain_event(snapshot)
        account = decoded.mutate(None)
        assert isinstance(account, Account)
        if account.modified_on > self.at:
            return False
        self.account = account
        return True

    def apply(self, stored: StoredEvent, position: int | None = None) -> bool:
        """Folds the next event of the stream; False (folding nothing) once one is after `at`."""
        event: Any = self.mapper.to_domain_event(stored)
        if event.timestamp > self.at:
            return False
        self.account = event.mutate(self.account)
        self.position = position
        if isinstance(event, Account.Reserved):
            self.reserved_at[event.hold_id] = event.timestamp
        return True

    def note_reserved(self, stored: StoredEvent) -> None:
        """A `Reserved` from before the snapshot: when one of its open holds was reserved."""
        event: Any = self.mapper.to_domain_event(stored)
        self.reserved_at.setdefault(event.hold_id, event.timestamp)

    def holds_without_time(self) -> set[str]:
        if self.account is None:
            return set()
        return {h.hold_id for h in self.account.holds.values()} - set(self.reserved_at)


def describe(
    account: Account, catalog: Catalog, at: datetime, position: int, reserved_at: dict[str, Any]
) -> dict[str, Any]:
    """The account at `at` as the account read shows it, plus its lots."""
    balances = account.balances(catalog)
    resets = [b["next_reset_at"] for b in balances.values() if b["next_reset_at"] is not None]
    scheduled = account.scheduled_plan
    lots = sorted(account.lots.values(), key=lambda lot: lot.seq)
    holds = sorted(account.holds.values(), key=lambda hold: hold.hold_id)
    return {
        "account_id": account.id,
        "plan": account.plan,
        "opened_at": account.created_on,
        "scheduled_plan": None if scheduled is None else scheduled.plan,
        "scheduled_at": None if scheduled is None else scheduled.effective_at,
        "next_reset_at": min(resets, default=None),
        "balances": balances,
        "holds": [
            {
                "hold_id": h.hold_id,
                "credit_type": h.credit_type,
                "action": h.action,
                "amount": h.amount,
                "reserved_at": reserved_at[h.hold_id],
                "expires_at": h.expires_at,
            }
            for h in holds
        ],
        "lots": [
            {
                "lot_id": lot.lot_id,
                "credit_type": lot.credit_type,
                "source": lot.source,
                "amount": lot.amount,
                "remaining": lot.remaining,
                "held": lot.held,
                "revoked": lot.revoked,
                "priority": lot.priority,
                "paid": lot.paid,
                "closed": lot.closed,
                "granted_at": lot.effective_at,
                "expires_at": lot.expires_at,
                "payment_reference": lot.payment_reference,
                "past_expiry": lot.expired(at),
            }
            for lot in lots
        ],
        "version": account.version,
        "position": position,
        "as_of": at,
    }


async def account_at(
    conn: asyncpg.Connection, mapper: Mapper[Any], account_id: str, at: datetime
) -> FoldAt | None:
    """The account's stored events up to `at`, folded; None if it had not opened by then (or
    no ledger ever wrote to this database)."""
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", EVENTS_TABLE):
        return None
    fold = FoldAt(mapper, at)
    after = 0
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", SNAPSHOTS_TABLE):
        after = await _start_from_snapshot(conn, fold, account_id)
        if after:
            fold.position = await conn.fetchval(
                f"SELECT notification_id FROM {EVENTS_TABLE} "
                "WHERE originator_id = $1 AND originator_version = $2",
                account_id,
                after,
            )
    for _ in range(MAX_PAGES):
        rows = await conn.fetch(
            "SELECT notification_id, originator_version, topic, state "
            f"FROM {EVENTS_TABLE} WHERE originator_id = $1 AND originator_version > $2 "
            "ORDER BY originator_version LIMIT $3",
            account_id,
            after,
            PAGE_ROWS,
        )
        for row in rows:
            if not fold.apply(_stored(account_id, row), row["notification_id"]):
                return await _with_hold_times(conn, fold, account_id)
        if len(rows) < PAGE_ROWS:
            return await _with_hold_times(conn, fold, account_id)
        after = rows[-1]["originator_version"]
    raise AssertionError(f"{account_id}: a stream longer than {MAX_PAGES} pages")


async def _start_from_snapshot(conn: asyncpg.Connection, fold: FoldAt, account_id: str) -> int:
    """The version of the newest snapshot at or before `at` the fold starts from; 0 if none."""
    below = 2**62
    for _ in range(MAX_PAGES):
        rows = await conn.fetch(
            f"SELECT originator_version, topic, state FROM {SNAPSHOTS_TABLE} "
            "WHERE originator_id = $1 AND originator_version < $2 "
            "ORDER BY originator_version DESC LIMIT $3",
            account_id,
            below,
            PAGE_ROWS,
        )
        for row in rows:
            if fold.start_from(_stored(account_id, row)):
                version: int = row["originator_version"]
                return version
        if len(rows) < PAGE_ROWS:
            return 0
        below = rows[-1]["originator_version"]
    raise AssertionError(f"{account_id}: more than {MAX_PAGES} pages of snapshots")


async def _with_hold_times(
    conn: asyncpg.Connection, fold: FoldAt, account_id: str
) -> FoldAt | None:
    """The fold, once every open hold's reserve time is known (newest `Reserved` first: open
    holds are recent, their TTL bounds them)."""
    if fold.account is None:
        return None
    below = 2**62
    for _ in range(MAX_PAGES):
        missing = fold.holds_without_time()
        if not missing:
            return fold
        rows = await conn.fetch(
            f"SELECT originator_version, topic, state FROM {EVENTS_TABLE} "
            "WHERE originator_id = $1 AND topic = $2 AND originator_version < $3 "
            "ORDER BY originator_version DESC LIMIT $4",
            account_id,
            RESERVED_TOPIC,
            min(below, fold.account.version + 1),
            PAGE_ROWS,
        )
        for row in rows:
            fold.note_reserved(_stored(account_id, row))
        if len(rows) < PAGE_ROWS:
            break
        below = rows[-1]["originator_version"]
    assert not fold.holds_without_time(), (account_id, fold.holds_without_time())
    return fold


def _stored(account_id: str, row: Any) -> StoredEvent:
    return StoredEvent(account_id, row["originator_version"], row["topic"], bytes(row["state"]))
