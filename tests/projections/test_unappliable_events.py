"""No stored event can stop a read model.

Events that no code can apply (unknown kinds, broken JSON, missing fields, events the state
refutes) or whose values PostgreSQL refuses at write are skipped and recorded, never retried
for ever, and a rebuild skips the same ones; a value the projections can store is stored.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from eventsourcing.persistence import StoredEvent

from domain.account import Account
from domain.catalog import MAX_AMOUNT
from projections.batch import BatchState
from projections.projector import Projector
from projections.rebuild import rebuild
from projections.store import checksum, ensure_tables
from projections.tables import EXACT_INT, TEXT, Table
from tests.projections.extreme_streams import (
    EXTREME_TIMES,
    Extremes,
    account_id,
    extreme_stream,
    overdrawn_stream,
)
from tests.projections.raw_side import Side, assert_equal_to_the_fold, project, store

pytestmark = pytest.mark.integration


def _unknown_kind(account: str) -> StoredEvent:
    return StoredEvent(account, 2, "domain.account:Account.FromAFutureVersion", b'{"x":1}')


async def test_events_no_code_can_apply_are_skipped_recorded_and_rebuilt_alike(
    side: Side,
) -> None:
    x = Extremes("\x00", "\ud800", MAX_AMOUNT, EXTREME_TIMES[4], "2024-02-29")
    good = extreme_stream(account_id(), x)
    side.accounts.append(good[0].originator_id)
    # Fields a newer version added, and a newer class version: projected, not skipped.
    newer = extreme_stream(account_id(), x)
    side.accounts.append(newer[0].originator_id)
    poison = overdrawn_stream(account_id(), 3)
    poison_id = poison[0].originator_id
    consumed = poison[1]
    assert isinstance(consumed, Account.Consumed)
    missing_field = side.store.stored(poison[2])
    state = missing_field.state.replace(b'"credit_type":"credits",', b"")
    assert state != missing_field.state
    # Refuted by the state: a capture of a hold that was never reserved.
    captured = Account.Captured(
        originator_id=poison_id,
        originator_version=5,
        timestamp=x.at,
        command_id=None,
        hold_id="never-reserved",
        credit_type="refuted",
        amount=7,
        breakdown=[{"lot_id": "lot-9", "amount": 7}],
        released=[],
        forfeited=0,
    )
    await store(side, good[:10])
    await store(side, newer, a_field_from_a_newer_version={"nested": ["\x00"]}, class_version=9)
    await store(side, poison[:1])
    await asyncio.to_thread(
        side.store.insert,
        [
            _unknown_kind(poison_id),
            StoredEvent(poison_id, 3, missing_field.topic, state),
            StoredEvent(poison_id, 4, missing_field.topic, b'{"broken'),
            side.store.stored(captured),
        ],
    )
    await store(side, good[10:])
    await project(side)
    # The refuted capture moved what transactions and analytics keep of its credit type.
    await assert_equal_to_the_fold(side, others={"refuted"})

    async with side.read_side.pool.acquire() as conn:
        skipped = await conn.fetch(
            "SELECT projection, originator_id, originator_version, topic, error "
            "FROM rm_skipped_events ORDER BY projection, position"
        )
        positions = await conn.fetch(
            "SELECT projection, position FROM rm_skipped_events ORDER BY projection, position"
        )
        before = {
            name: await checksum(conn, projection)
            for name, projection in side.read_side.projections.items()
        }
    by_projection: dict[str, set[int]] = {}
    for r in skipped:
        assert r["originator_id"] == poison_id
        by_projection.setdefault(r["projection"], set()).add(r["originator_version"])
    # Every model skips what does not decode (2: an unknown kind, 4: broken JSON) or lacks a
    # field it reads (3); the capture of a hold never reserved (5) is refused by the models
    # that keep holds, while transactions and analytics take it from its fields alone.
    assert by_projection == {
        "balances": {2, 3, 4, 5},
        "usage": {2, 3, 4, 5},
        "transactions": {2, 3, 4},
        "analytics": {2, 3, 4},
    }
    errors = {(r["projection"], r["originator_version"]): r["error"] for r in skipped}
    assert "FromAFutureVersion" in errors["balances", 2]
    assert "JSONDecodeError" in errors["balances", 4]
    topics = {r["originator_version"]: r["topic"] for r in skipped}
    assert topics[2] == "domain.account:Account.FromAFutureVersion"

    # A rebuild applies and skips the same events: same rows, same checksums, same skips.
    for name, projection in side.read_side.projections.items():
        result = await rebuild(side.read_side.pool, side.read_side.log, projection, batch_events=7)
        assert result.matches, name
        assert result.rebuilt_checksum == before[name]
        assert result.skipped == len(by_projection[name])
    async with side.read_side.pool.acquire() as conn:
        after = await conn.fetch(
            "SELECT projection, position FROM rm_skipped_events ORDER BY projection, position"
        )
    assert [tuple(r) for r in after] == [tuple(r) for r in positions]


async def test_a_nul_in_a_stored_payment_reference_no_longer_stops_balances(
    side: Side,
) -> None:
    """The case seen in the wild: a purchase whose payment_reference holds a NUL."""
    x = Extremes("plain", "other", 4000, datetime(2024, 2, 29, tzinfo=UTC), "2024-02-29")
    events = extreme_stream(account_id(), x)
    granted = next(e for e in events if isinstance(e, Account.Granted) and e.paid)
    nul_reference = "pi_3Q\x00" + uuid.uuid4().hex
    object.__setattr__(granted, "payment_reference", nul_reference)
    side.accounts.append(events[0].originator_id)
    await store(side, events)
    await project(side)
    await assert_equal_to_the_fold(side)
    async with side.read_side.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT payment_reference FROM rm_lots WHERE paid")
    assert stored.startswith("pi_3Q\\u0000") and "\x00" not in stored


class _WritesWhatPostgresRefuses:
    """Counts events per account, but notes a NUL for the accounts named `...-nul`: text
    PostgreSQL refuses when the batch is written, not when the event is applied."""

    name = "refused_writes_test_projection"
    tables: tuple[Table, ...] = (
        Table(
            "rm_test_refused_writes",
            "account",
            (("account_id", TEXT), ("events", EXACT_INT), ("note", TEXT)),
            key=("account_id",),
        ),
    )

    def apply(self, state: BatchState, event: Account.Event, position: int) -> None:
        rows = state.rows("rm_test_refused_writes")
        row = rows.get(event.originator_id) or {
            "account_id": event.originator_id,
            "events": 0,
            "note": "",
        }
        row["events"] += 1
        row["note"] = "\x00" if event.originator_id.endswith("-nul") else "ok"
        rows.put(row)

    def finish(self, state: BatchState) -> None:
        pass


async def test_values_postgres_refuses_at_write_are_skipped_live_and_in_a_rebuild_alike(
    side: Side,
) -> None:
    projection = _WritesWhatPostgresRefuses()
    read_side = side.read_side
    async with read_side.pool.acquire() as conn:
        await ensure_tables(conn, [projection])
    for n in range(12):
        events = overdrawn_stream(account_id("-nul" if n % 4 == 1 else ""), 2)
        await store(side, events)
    projector = Projector(read_side.pool, read_side.log, {projection.name: projection})
    await projector.catch_up()
    async with read_side.pool.acquire() as conn:
        head = await read_side.log.max_position(conn)
        position = await conn.fetchval(
            "SELECT position FROM rm_tracking WHERE projection = $1", projection.name
        )
        skipped = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT position, originator_id FROM rm_skipped_events WHERE projection = $1 "
                "ORDER BY position",
                projection.name,
            )
        ]
        counted = dict(await conn.fetch("SELECT account_id, events FROM rm_test_refused_writes"))
    assert position == head
    # Every event of the three `-nul` accounts, and only those.
    assert len(skipped) == 3 * 3 and all(a.endswith("-nul") for _, a in skipped)
    assert len(counted) == 9 and set(counted.values()) == {3}
    # In a rebuild the refusal comes at the commit of a batch, while the next one is applied.
    result = await rebuild(read_side.pool, read_side.log, projection, batch_events=4)
    assert (result.matches, result.skipped) == (True, len(skipped))
    async with read_side.pool.acquire() as conn:
        after = await conn.fetch(
            "SELECT position, originator_id FROM rm_skipped_events WHERE projection = $1 "
            "ORDER BY position",
            projection.name,
        )
    assert [tuple(r) for r in after] == skipped
