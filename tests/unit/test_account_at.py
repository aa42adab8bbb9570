"""The account at a past instant (projections/account_at.py) equals the fold of its events cut
at that instant, whatever snapshots were taken after it; and `as_of` parses as documented.

Random command sequences run through the real ledger service on the in-memory store (snapshots
every 3 events, so most instants fall between snapshots and many snapshots are after them),
then random instants (event times exactly, a microsecond either side, anywhere around) are read
the way `account_at` reads PostgreSQL: the newest snapshot whose last event is at or before the
instant, then the events after it up to the instant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from eventsourcing.application import project_aggregate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.account import Account
from domain.snapshots import encode
from infra.event_mapper import ledger_mapper
from projections.account_at import (
    RESERVED_TOPIC,
    AsOfInFuture,
    AsOfInvalid,
    FoldAt,
    describe,
    parse_as_of,
)
from tests.kit.clock import START, SettableClock
from tests.kit.command_scripts import PLANS, STEPS, play
from tests.kit.ledger import Ledger

ACCOUNT = "acct"
MY_STEPS = (*STEPS, "grant_expiring", "expire")
steps = st.lists(
    st.tuples(st.sampled_from(MY_STEPS), st.integers(0, 1000)), min_size=1, max_size=25
)


def _expiring(ledger: Ledger, step: str, n: int) -> dict[str, Any] | None:
    """This test's own steps: a grant that expires soon, and the expiry."""
    if step == "grant_expiring":
        expires_at = ledger.clock.now() + timedelta(minutes=1 + n % 300)
        return {
            "type": "grant",
            "credit_type": "credits",
            "amount": 1 + n,
            "source": "promotional",
            "expires_at": expires_at.isoformat(),
        }
    if step == "expire":
        return {"type": "expire"}
    return None


def drive(ledger: Ledger, script: list[tuple[str, int]]) -> None:
    play(ledger, script, lambda n: ACCOUNT, _expiring)


def read_at(ledger: Ledger, at: datetime) -> FoldAt:
    """`account_at`'s reading, on the in-memory recorders."""
    fold = FoldAt(ledger_mapper(), at)
    after = 0
    assert ledger.app.snapshots is not None
    for snapshot in ledger.app.snapshots.recorder.select_events(ACCOUNT, desc=True):
        if fold.start_from(snapshot):
            after = snapshot.originator_version
            break
    for stored in ledger.app.recorder.select_events(ACCOUNT, gt=after):
        if not fold.apply(stored, stored.originator_version):
            break
    if fold.account is not None:
        older = ledger.app.recorder.select_events(ACCOUNT, lte=after, desc=True)
        for stored in older:
            if not fold.holds_without_time():
                break
            if stored.topic == RESERVED_TOPIC:
                fold.note_reserved(stored)
    return fold


def events_of(ledger: Ledger) -> list[Account.Event]:
    return [cast(Account.Event, e) for e in ledger.app.events.get(ACCOUNT)]


def fold_cut_at(ledger: Ledger, at: datetime) -> tuple[Account | None, dict[str, datetime]]:
    """The plain fold of every stored event at or before `at`."""
    events = [e for e in events_of(ledger) if e.timestamp <= at]
    account = project_aggregate(None, events)
    reserved = {e.hold_id: e.timestamp for e in events if isinstance(e, Account.Reserved)}
    return (account if isinstance(account, Account) else None), reserved


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(
    plan=st.sampled_from(PLANS),
    script=steps,
    picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=8),
    offsets_seconds=st.lists(st.integers(-7200, 90 * 86400), min_size=1, max_size=4),
)
def test_the_account_at_any_instant_is_the_fold_of_its_events_up_to_it(
    plan: str, script: list[tuple[str, int]], picks: list[int], offsets_seconds: list[int]
) -> None:
    ledger = Ledger("demo.toml", SettableClock(START), LEDGER_SNAPSHOT_INTERVAL="3")
    try:
        ledger.clock.advance(minutes=5)
        ledger.ok("open_account", ACCOUNT, plan=plan)
        drive(ledger, script)
        times = sorted({e.timestamp for e in events_of(ledger)})
        tick = timedelta(microseconds=1)
        instants = [START + timedelta(seconds=s) for s in offsets_seconds]
        for pick in picks:
            exact = times[pick % len(times)]
            instants += [exact, exact - tick, exact + tick]
        for at in instants:
            found = read_at(ledger, at)
            expected, reserved = fold_cut_at(ledger, at)
            if expected is None:
                assert found.account is None, at
                continue
            assert found.account is not None, at
            assert found.account.version == expected.version
            assert encode(vars(found.account)) == encode(vars(expected))
            catalog = ledger.catalog
            seen = describe(found.account, catalog, at, 0, found.reserved_at)
            assert seen == describe(expected, catalog, at, 0, reserved)
            # Nothing after the instant was folded, nothing up to it was left out.
            assert found.account.modified_on <= at
            later = [t for t in times if t > found.account.modified_on]
            assert not later or later[0] > at
    finally:
        ledger.close()


def test_an_event_at_exactly_the_instant_counts_and_later_snapshots_are_skipped() -> None:
    ledger = Ledger("demo.toml", SettableClock(START), LEDGER_SNAPSHOT_INTERVAL="2")
    try:
        ledger.ok("open_account", ACCOUNT, plan="free")
        opened = ledger.account(ACCOUNT)
        opened_at, opened_version = opened.created_on, opened.version
        ledger.clock.advance(hours=1)
        granted_at = ledger.clock.now()
        ledger.ok("grant", ACCOUNT, credit_type="credits", amount=7, source="admin")
        for _ in range(6):  # snapshots after the grant
            ledger.clock.advance(hours=1)
            ledger.ok("grant", ACCOUNT, credit_type="credits", amount=1, source="admin")
        assert ledger.app.snapshots is not None
        assert len(ledger.app.snapshots.recorder.select_events(ACCOUNT)) >= 3
        at_grant = read_at(ledger, granted_at).account
        before_grant = read_at(ledger, granted_at - timedelta(microseconds=1)).account
        assert at_grant is not None and before_grant is not None
        assert before_grant.version == opened_version
        assert at_grant.version == opened_version + 1
        assert at_grant.available("credits") == before_grant.available("credits") + 7
        assert read_at(ledger, opened_at - timedelta(microseconds=1)).account is None
        assert read_at(ledger, opened_at).account is not None
    finally:
        ledger.close()


def test_a_lot_past_its_expiry_shows_as_recorded_until_the_ledger_expires_it() -> None:
    ledger = Ledger("demo.toml", SettableClock(START))
    try:
        ledger.ok("open_account", ACCOUNT, plan="free")
        expires_at = START + timedelta(hours=1)
        ledger.ok(
            "grant",
            ACCOUNT,
            credit_type="credits",
            amount=50,
            source="promotional",
            expires_at=expires_at.isoformat(),
        )
        ledger.clock.advance(hours=3)
        ledger.ok("expire", ACCOUNT)
        between = expires_at + timedelta(hours=1)
        fold = read_at(ledger, between)
        assert fold.account is not None
        seen = describe(fold.account, ledger.catalog, between, 0, fold.reserved_at)
        lot = next(lot for lot in seen["lots"] if lot["source"] == "promotional")
        assert lot["past_expiry"] and not lot["closed"] and lot["remaining"] == 50
        after = ledger.clock.now()
        fold = read_at(ledger, after)
        assert fold.account is not None
        seen = describe(fold.account, ledger.catalog, after, 0, fold.reserved_at)
        expired = [lot for lot in seen["lots"] if lot["source"] == "promotional"]
        assert all(lot["closed"] and not lot["past_expiry"] for lot in expired)
        assert all(lot["remaining"] == 0 for lot in expired)
    finally:
        ledger.close()


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31T10:00:00Z", datetime(2026, 1, 31, 10, 0, tzinfo=UTC)),
        ("2026-01-31t10:00:00z", datetime(2026, 1, 31, 10, 0, tzinfo=UTC)),
        ("2026-01-31T12:00:00+02:00", datetime(2026, 1, 31, 10, 0, tzinfo=UTC)),
        ("2026-01-31T12:00:00 02:00", datetime(2026, 1, 31, 10, 0, tzinfo=UTC)),
        ("2026-01-31T10:00:00.123456Z", datetime(2026, 1, 31, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2026-03-01T12:00:00Z", NOW),
    ],
)
def test_as_of_takes_rfc_3339_times_with_an_offset(text: str, expected: datetime) -> None:
    assert parse_as_of(text, NOW) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-31",
        "2026-01-31T10:00:00",
        "2026-01-31 10:00:00Z",
        "2026-13-31T10:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-01-31T10:00:00+24:00",
        "2026-01-31T10:00:00.1234567Z",
        "0001-01-01T00:00:00+01:00",
        "yesterday",
        "",
    ],
)
def test_as_of_refuses_what_is_not_rfc_3339_with_an_offset(text: str) -> None:
    with pytest.raises(AsOfInvalid):
        parse_as_of(text, NOW)


def test_as_of_refuses_the_future() -> None:
    with pytest.raises(AsOfInFuture):
        parse_as_of("2026-03-01T12:00:00.000001Z", NOW)


@given(st.text(max_size=60))
def test_as_of_answers_any_text_with_a_time_or_a_refusal(text: str) -> None:
    try:
        at = parse_as_of(text, NOW)
    except (AsOfInvalid, AsOfInFuture):
        return
    assert at.tzinfo is UTC and at <= NOW
