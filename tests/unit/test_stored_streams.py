"""Streams stored by earlier code still load, and the same commands still write the same thing.

The fixture (see tests/unit/account_history.py) holds what the account code wrote before it was
split into value objects: events, snapshots of the old shape (v1) and replies. The events are
as written then; the replies gained one field since, added by hand (a capture's
`held_remaining`, 0 for a capture that closes its hold): a reply may gain fields, an event
stored may never change. Events written today may gain fields, under a new class version whose
upcast gives the events stored before a value (allocation events gained `plan` in version 2).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.persistence import StoredEvent

from domain.account import Account
from domain.catalog import load_catalog
from infra.ledger_application import LedgerApplication
from tests.kit.clock import SettableClock
from tests.kit.ledger import CATALOGS, MEMORY, Ledger
from tests.unit import account_history as history

FIXTURE = json.loads(history.FIXTURE.read_text())
CATALOG = load_catalog(CATALOGS / FIXTURE["catalog"])


ALLOCATION_TOPICS = {
    "domain.account:Account.AllocationGranted",
    "domain.account:Account.Renewed",
}


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "state": json.loads(row["state"])}


def _as_before(row: dict[str, Any]) -> dict[str, Any]:
    """A row written today as the fixture's code wrote it: without the fields added since."""
    parsed = _parsed(row)
    if row["topic"] in ALLOCATION_TOPICS:
        assert parsed["state"].pop("class_version") == 2
        parsed["state"].pop("plan")
    return parsed


def test_an_allocation_stored_before_it_named_its_plan_loads_with_none():
    app = _app(with_snapshots=False)
    loaded: list[Any] = [
        app.mapper.to_domain_event(stored)
        for stored in _stored(FIXTURE["events"])
        if stored.topic in ALLOCATION_TOPICS
    ]
    assert loaded and all(event.plan is None for event in loaded)
    assert {type(event) for event in loaded} == {Account.AllocationGranted, Account.Renewed}


def _stored(rows: list[dict[str, Any]]) -> list[StoredEvent]:
    return [
        StoredEvent(
            originator_id=row["originator_id"],
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=row["state"].encode(),
        )
        for row in rows
    ]


def _app(*, with_snapshots: bool) -> LedgerApplication:
    interval = history.SNAPSHOT_INTERVAL if with_snapshots else "0"
    app = LedgerApplication(env={**MEMORY, "LEDGER_SNAPSHOT_INTERVAL": interval})
    app.recorder.insert_events(_stored(FIXTURE["events"]))
    if with_snapshots:
        assert app.snapshots is not None
        app.snapshots.recorder.insert_events(_stored(FIXTURE["snapshots"]))
    return app


@pytest.mark.parametrize("with_snapshots", [False, True])
@pytest.mark.parametrize("account_id", history.ACCOUNTS)
def test_an_account_stored_before_loads_with_the_same_state(account_id, with_snapshots):
    app = _app(with_snapshots=with_snapshots)
    account: Account = app.repository.get(account_id)
    assert history.describe(account, CATALOG) == FIXTURE["accounts"][account_id]


def test_every_old_snapshot_equals_the_fold_of_the_events_before_it():
    from_events = _app(with_snapshots=False)
    with_snapshots = _app(with_snapshots=True)
    assert with_snapshots.snapshots is not None
    snapshots = FIXTURE["snapshots"]
    assert len(snapshots) >= 10
    for stored in _stored(snapshots):
        snapshot: Any = with_snapshots.snapshots.mapper.to_domain_event(stored)
        restored = snapshot.mutate(None)
        version = stored.originator_version
        folded: Account = from_events.repository.get(str(stored.originator_id), version=version)
        assert history.describe(restored, CATALOG) == history.describe(folded, CATALOG)


def test_an_account_loaded_from_an_old_snapshot_takes_commands_and_snapshots_anew():
    app = _app(with_snapshots=True)
    account: Account = app.repository.get("carol")
    ledger = Ledger(CATALOG, SettableClock(account.modified_on), app=app)
    reply = ledger.send("capture", "carol", "c1", hold_id="ch1", amount=3)
    assert reply.status == "accepted", reply.error
    assert reply.result == {
        "hold_id": "ch1",
        "captured": 3,
        "released": 7,
        "breakdown": [{"lot_id": "lot-9", "amount": 3}],
        "held_remaining": 0,
    }
    assert reply.balances["storage"].available == 1000 - 3
    # The capture took carol to a multiple of the interval: a snapshot of today's shape.
    assert app.snapshots is not None
    (latest,) = app.snapshots.get("carol", desc=True, limit=1)
    assert latest.originator_version == 30 == account.version + 1
    app.forget(["carol"])
    assert app.repository.get("carol") == project_aggregate(None, app.events.get("carol"))


def test_the_same_commands_write_the_same_events_and_the_same_replies():
    ledger = Ledger(FIXTURE["catalog"], LEDGER_SNAPSHOT_INTERVAL=history.SNAPSHOT_INTERVAL)
    replies = history.run(ledger)
    assert replies == FIXTURE["replies"]
    stored = [
        {
            "originator_id": e.originator_id,
            "originator_version": e.originator_version,
            "topic": e.topic,
            "state": e.state.decode(),
        }
        for account_id in history.ACCOUNTS
        for e in ledger.app.recorder.select_events(account_id)
    ]
    assert [_as_before(row) for row in stored] == [_parsed(row) for row in FIXTURE["events"]]
    allocations = [row for row in stored if row["topic"] in ALLOCATION_TOPICS]
    assert allocations and all(json.loads(str(row["state"]))["plan"] for row in allocations)
    for account_id in history.ACCOUNTS:
        described = history.describe(ledger.account(account_id), ledger.catalog)
        assert described == FIXTURE["accounts"][account_id]
