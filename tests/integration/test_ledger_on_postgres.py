"""The ledger on the real PostgreSQL: what is stored reloads to what was decided, and concurrent
spenders of one account never overspend it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from domain.account import Account
from domain.catalog import load_catalog, parse_catalog
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings
from services.ledger.service import LedgerService
from tests.kit.clock import SettableClock

pytestmark = pytest.mark.integration
# Time moves a little on every read, so events get distinct, increasing times.
STEP = timedelta(milliseconds=1)

DEMO = load_catalog(Path(__file__).resolve().parents[2] / "domain" / "catalogs" / "demo.toml")
# One credit type, a plan with no allocation: the account holds exactly what it is granted.
PAY_AS_YOU_GO = parse_catalog(
    """
version = "payg-1"
[credit_types.credits]
unit = "credit"
[actions.call]
credit_type = "credits"
cost = 1
[plans.payg]
name = "Pay as you go"
"""
)


def _app(settings: Settings, **env: str) -> LedgerApplication:
    return LedgerApplication(env={**event_store_env(settings), **env})


@pytest.fixture
def ledger(settings: Settings, pg_database: str) -> Iterator[LedgerService]:
    app = _app(settings)
    yield LedgerService(app, DEMO, SettableClock(datetime(2024, 1, 31, 10, tzinfo=UTC), step=STEP))
    app.close()


def _command(account_id: str, type: str, **fields: Any) -> dict[str, Any]:
    return {"type": type, "command_id": uuid.uuid4().hex, "account_id": account_id, **fields}


def _state(account: Account) -> dict[str, Any]:
    """The aggregate's state, without what only lives in memory (pending events)."""
    return {k: v for k, v in vars(account).items() if k != "_pending_events"}


def _busy_history(account_id: str) -> list[dict[str, Any]]:
    """A stream that touches lots, holds, purchases, refunds and a plan change."""
    return [
        _command(account_id, "open_account", plan="starter"),
        _command(account_id, "consume", action="generate", quantity=3),
        _command(account_id, "reserve", hold_id="h1", action="lookup", ttl_seconds=600),
        _command(account_id, "capture", hold_id="h1"),
        _command(account_id, "grant", credit_type="credits", amount=40, source="promotional"),
        _command(
            account_id, "reserve", hold_id="h2", credit_type="credits", amount=5, ttl_seconds=600
        ),
        _command(account_id, "release", hold_id="h2"),
        _command(
            account_id,
            "purchase",
            credit_type="credits",
            amount=100,
            payment_reference="pi_1",
            amount_paid=500,
            currency="usd",
        ),
        _command(account_id, "consume", credit_type="credits", amount=60, quantity=1),
        _command(account_id, "revoke", payment_reference="pi_1", reason="refund"),
        _command(account_id, "change_plan", plan="pro", effective="now"),
        _command(account_id, "consume", action="lookup", quantity=7),
    ]


@pytest.mark.parametrize("snapshot_interval", ["0", "3"], ids=["replay", "snapshots"])
def test_an_account_reloaded_from_the_store_equals_the_one_in_memory(
    settings: Settings, pg_database: str, snapshot_interval: str
) -> None:
    account_id = f"reload-{uuid.uuid4().hex[:8]}"
    writer_app = _app(settings, LEDGER_SNAPSHOT_INTERVAL=snapshot_interval)
    writer = LedgerService(
        writer_app, DEMO, SettableClock(datetime(2024, 1, 31, 10, tzinfo=UTC), step=STEP)
    )
    replies = [writer.handle(command) for command in _busy_history(account_id)]
    assert [r.status for r in replies] == ["accepted"] * len(replies), [r.error for r in replies]
    in_memory: Account = writer_app.repository.get(account_id)

    # A second application with no cache: everything comes from PostgreSQL.
    reader_app = _app(
        settings, LEDGER_SNAPSHOT_INTERVAL=snapshot_interval, AGGREGATE_CACHE_MAXSIZE="0"
    )
    reloaded: Account = reader_app.repository.get(account_id)

    assert reloaded.version == in_memory.version > len(replies)
    assert _state(reloaded) == _state(in_memory)
    last_reply_balances = {k: v.model_dump() for k, v in replies[-1].balances.items()}
    assert reloaded.balances(DEMO) == in_memory.balances(DEMO) == last_reply_balances
    # The ledger's bulk load (one query for many accounts, cold cache) rebuilds the same state.
    bulk_app = _app(
        settings, LEDGER_SNAPSHOT_INTERVAL=snapshot_interval, AGGREGATE_CACHE_FASTFORWARD="n"
    )
    loaded = bulk_app.accounts([account_id, "no-such-account"])
    assert list(loaded) == [account_id]
    assert _state(loaded[account_id]) == _state(in_memory)
    bulk_app.close()
    if snapshot_interval != "0":
        assert reader_app.snapshots is not None
        assert list(reader_app.snapshots.get(account_id, desc=True, limit=1))
    writer_app.close()
    reader_app.close()


def test_sixteen_threads_spending_one_account_never_overspend_it(
    settings: Settings, pg_database: str
) -> None:
    threads_count, consumes_per_thread, credits_held = 16, 100, 1000
    account_id = f"race-{uuid.uuid4().hex[:8]}"
    app = _app(settings)
    service = LedgerService(
        app, PAY_AS_YOU_GO, SettableClock(datetime(2024, 1, 31, tzinfo=UTC), step=STEP)
    )
    assert service.handle(_command(account_id, "open_account", plan="payg")).status == "accepted"
    granted = service.handle(
        _command(account_id, "grant", credit_type="credits", amount=credits_held, source="admin")
    )
    assert granted.balances["credits"].available == credits_held

    statuses: list[str] = []
    errors: list[BaseException] = []
    record = threading.Lock()
    start = threading.Barrier(threads_count)

    def spend() -> None:
        start.wait()
        for _ in range(consumes_per_thread):
            try:
                reply = service.handle(
                    _command(account_id, "consume", credit_type="credits", amount=1, quantity=1)
                )
            except BaseException as error:  # a failure must fail the test, not vanish
                with record:
                    errors.append(error)
                continue
            with record:
                statuses.append(
                    reply.status if reply.error is None else f"{reply.status}:{reply.error.code}"
                )

    workers = [threading.Thread(target=spend) for _ in range(threads_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)

    assert errors == []
    assert len(statuses) == threads_count * consumes_per_thread
    assert statuses.count("accepted") == credits_held
    assert statuses.count("rejected:insufficient_credits") == 600
    # What is stored agrees: a fresh application with no cache sees a zero balance and one
    # spend event per accepted command.
    reader = _app(settings, AGGREGATE_CACHE_MAXSIZE="0")
    account: Account = reader.repository.get(account_id)
    assert account.balances(PAY_AS_YOU_GO)["credits"]["available"] == 0
    stored = list(reader.events.get(account_id))
    assert sum(isinstance(e, Account.Consumed) for e in stored) == credits_held
    app.close()
    reader.close()


def test_two_processes_racing_on_one_account_apply_each_command_once(
    settings: Settings, pg_database: str
) -> None:
    """Two applications (as two processes would) retry on version conflicts; none overspends."""
    account_id = f"two-{uuid.uuid4().hex[:8]}"
    apps = [_app(settings) for _ in range(2)]
    clock = SettableClock(datetime(2024, 1, 31, tzinfo=UTC), step=STEP)
    services = [LedgerService(app, PAY_AS_YOU_GO, clock, max_attempts=50) for app in apps]
    services[0].handle(_command(account_id, "open_account", plan="payg"))
    services[0].handle(
        _command(account_id, "grant", credit_type="credits", amount=100, source="admin")
    )
    commands = [
        _command(account_id, "consume", credit_type="credits", amount=1, quantity=1)
        for _ in range(150)
    ]
    statuses: dict[str, set[str]] = {}
    record = threading.Lock()

    def send_all(service: LedgerService) -> None:
        # Both processes receive every command (a redelivery storm): each applies once.
        for command in commands:
            reply = service.handle(command)
            with record:
                statuses.setdefault(command["command_id"], set()).add(reply.status)

    workers = [threading.Thread(target=send_all, args=(s,)) for s in services]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)

    accepted = [c for c, seen in statuses.items() if "accepted" in seen]
    assert len(statuses) == 150
    assert len(accepted) == 100
    # An accepted command answered the other process `duplicate`, never a second `accepted`.
    assert all(seen <= {"accepted", "duplicate"} for c, seen in statuses.items() if c in accepted)
    reader = _app(settings, AGGREGATE_CACHE_MAXSIZE="0")
    stored = list(reader.events.get(account_id))
    assert sum(isinstance(e, Account.Consumed) for e in stored) == 100
    for app in [*apps, reader]:
        app.close()


def test_a_refusal_is_never_decided_on_an_account_another_writer_moved_on(
    settings: Settings, pg_database: str
) -> None:
    """A ledger trusting its cache (no fast-forward, as `credits run ledger`) refuses nothing on
    a stale account: a grant written by another writer is spendable by its very next command."""
    account_id = f"stale-{uuid.uuid4().hex[:8]}"
    clock = SettableClock(datetime(2024, 1, 31, tzinfo=UTC), step=STEP)
    trusting = _app(settings, AGGREGATE_CACHE_FASTFORWARD="n")
    other = _app(settings)
    ledger = LedgerService(trusting, PAY_AS_YOU_GO, clock)
    writer = LedgerService(other, PAY_AS_YOU_GO, clock)
    try:
        ledger.handle(_command(account_id, "open_account", plan="payg"))
        spend = _command(account_id, "consume", credit_type="credits", amount=1, quantity=1)
        refused = ledger.handle(spend)  # the account, with nothing on it, is now cached
        assert refused.status == "rejected"
        for _ in range(3):
            granted = writer.handle(
                _command(account_id, "grant", credit_type="credits", amount=1, source="admin")
            )
            assert granted.status == "accepted"
            spend = _command(account_id, "consume", credit_type="credits", amount=1, quantity=1)
            spent = ledger.handle(spend)
            assert spent.status == "accepted", spent.error
            assert spent.balances["credits"].available == 0
    finally:
        trusting.close()
        other.close()


def test_a_batch_that_fails_to_save_leaves_the_cached_account_as_saved(
    settings: Settings, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger's batches change cached accounts in place (no copy): a save that fails with
    something other than a version conflict (the database went away) must not leave those
    changes in the cache, or the retry would apply the command twice."""
    app = _app(settings, AGGREGATE_CACHE_FASTFORWARD="n")
    service = LedgerService(
        app, PAY_AS_YOU_GO, SettableClock(datetime(2024, 1, 31, tzinfo=UTC), step=STEP)
    )
    account_id = f"fails-{uuid.uuid4().hex[:8]}"
    service.handle(_command(account_id, "open_account", plan="payg"))
    service.handle(_command(account_id, "grant", credit_type="credits", amount=100, source="admin"))
    spend = _command(account_id, "consume", action="call", quantity=10)

    def database_gone(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    with monkeypatch.context() as patched:
        patched.setattr(app.recorder, "insert_events", database_gone)
        with pytest.raises(OperationalError):
            service.handle(spend)

    retried = service.handle(spend)
    assert retried.status == "accepted"
    assert retried.balances["credits"].available == 90
    fresh = _app(settings)
    try:
        stored: Account = fresh.repository.get(account_id)
        assert stored.balances(PAY_AS_YOU_GO)["credits"]["available"] == 90
        assert stored.version == app.repository.get(account_id).version
    finally:
        fresh.close()
        app.close()


def test_a_batch_is_snapshotted_from_memory_at_the_version_it_saved(
    settings: Settings, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id = f"snap-{uuid.uuid4().hex[:8]}"
    writer_app = _app(settings, LEDGER_SNAPSHOT_INTERVAL="5", AGGREGATE_CACHE_FASTFORWARD="n")

    def reads_the_store(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the library's snapshot rebuilds the account from the store")

    monkeypatch.setattr(writer_app, "take_snapshot", reads_the_store)
    writer = LedgerService(
        writer_app, DEMO, SettableClock(datetime(2024, 1, 31, 10, tzinfo=UTC), step=STEP)
    )
    replies = writer.handle_many(_busy_history(account_id))
    assert [r.status for r in replies] == ["accepted"] * len(replies), [r.error for r in replies]
    in_memory: Account = writer_app.repository.get(account_id)
    assert in_memory.version % 5 != 0, "the batch ends between two multiples of the interval"

    reader_app = _app(settings, LEDGER_SNAPSHOT_INTERVAL="5", AGGREGATE_CACHE_MAXSIZE="0")
    try:
        assert reader_app.snapshots is not None
        (latest,) = reader_app.snapshots.get(account_id, desc=True, limit=1)
        assert latest.originator_version == in_memory.version
        reloaded: Account = reader_app.repository.get(account_id)
        assert _state(reloaded) == _state(in_memory)
    finally:
        reader_app.close()
        writer_app.close()


def test_the_bulk_load_folds_the_latest_snapshot_then_the_events_after_it(
    settings: Settings, pg_database: str
) -> None:
    """The ledger's cold load reads snapshots and events in one statement: each stream's
    latest snapshot must come first, then only the events after it, in order."""
    account_id = f"bulk-{uuid.uuid4().hex[:8]}"
    writer_app = _app(settings, LEDGER_SNAPSHOT_INTERVAL="4", AGGREGATE_CACHE_FASTFORWARD="n")
    writer = LedgerService(
        writer_app, DEMO, SettableClock(datetime(2024, 1, 31, 10, tzinfo=UTC), step=STEP)
    )
    history = iter(_busy_history(account_id))
    assert writer.handle(next(history)).status == "accepted"
    snapshots = writer_app.snapshots
    assert snapshots is not None
    in_memory: Account = writer_app.repository.get(account_id)
    # Commands one at a time until the stream has a snapshot and events after it.
    while True:
        latest = list(snapshots.get(account_id, desc=True, limit=1))
        in_memory = writer_app.repository.get(account_id)
        if latest and in_memory.version > latest[0].originator_version:
            break
        assert writer.handle(next(history)).status == "accepted"
    bulk_app = _app(settings, LEDGER_SNAPSHOT_INTERVAL="4", AGGREGATE_CACHE_FASTFORWARD="n")
    try:
        loaded = bulk_app.accounts([account_id, "no-such-account"])
        assert list(loaded) == [account_id]
        assert _state(loaded[account_id]) == _state(in_memory)
    finally:
        bulk_app.close()
        writer_app.close()
