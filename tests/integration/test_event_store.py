"""The PostgreSQL recorder keeps a command's events and its receipt together, or neither."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import eventsourcing.utils
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    MetaDomainEvent,
    event,
)
from eventsourcing.persistence import IntegrityError, OperationalError

from infra.event_store.batch_writes import BatchWrites
from infra.event_store.env import event_store_env
from infra.event_store.kafka_tables import KafkaPosition, KafkaPositionConflict
from infra.event_store.recorder import CreditsPostgresRecorder, StaleRead
from infra.receipts import Receipt, ReceiptConflict
from infra.settings import Settings

pytestmark = pytest.mark.integration


class TextIdAggregate(BaseAggregate[str]):
    # DomainEvent insists on UUID ids; the metaclass alone makes frozen dataclass events.
    class Event(CanMutateAggregate[str], metaclass=MetaDomainEvent):
        originator_id: str
        originator_version: int
        timestamp: datetime

    class Created(Event, CanInitAggregate[str]):
        originator_topic: str


class Counter(TextIdAggregate):
    """A stand-in aggregate: the recorder does not care what the events mean."""

    @event("Started")
    def __init__(self, id: str) -> None:
        self.count = 0

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


@pytest.fixture
def app(settings: Settings, pg_database: str) -> Iterator[Application[str]]:
    application: Application[str] = Application(env=event_store_env(settings))
    yield application
    application.close()


def _receipt(account_id: str, command_id: str) -> Receipt:
    return Receipt(account_id, command_id, "0" * 64, f'{{"command_id": "{command_id}"}}')


def test_receipt_is_stored_with_the_events_and_read_back(app: Application[str]) -> None:
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    counter = Counter(id=account_id)

    app.save(counter, writes=BatchWrites(receipts=[_receipt(account_id, "cmd-1")]))

    recorder = app.recorder
    assert isinstance(recorder, CreditsPostgresRecorder)
    found = recorder.select_receipts([(account_id, "cmd-1"), (account_id, "cmd-2")])
    assert found == {(account_id, "cmd-1"): _receipt(account_id, "cmd-1")}
    assert app.repository.get(account_id).count == 0


def test_a_second_receipt_for_the_same_command_rolls_back_its_events(
    app: Application[str],
) -> None:
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    counter = Counter(id=account_id)
    app.save(counter, writes=BatchWrites(receipts=[_receipt(account_id, "cmd-1")]))
    loaded: Counter = app.repository.get(account_id)
    loaded.increment()

    with pytest.raises(ReceiptConflict):
        app.save(loaded, writes=BatchWrites(receipts=[_receipt(account_id, "cmd-1")]))

    # The increment was in the same transaction as the conflicting receipt: it is not stored.
    assert app.repository.get(account_id, version=None).version == 1
    assert len(list(app.events.get(account_id))) == 1


def test_receipts_are_scoped_by_account(app: Application[str]) -> None:
    first, second = (f"acct-{uuid.uuid4().hex[:8]}" for _ in range(2))

    app.save(Counter(id=first), writes=BatchWrites(receipts=[_receipt(first, "same-id")]))
    app.save(Counter(id=second), writes=BatchWrites(receipts=[_receipt(second, "same-id")]))

    recorder = app.recorder
    assert isinstance(recorder, CreditsPostgresRecorder)
    found = recorder.select_receipts([(first, "same-id"), (second, "same-id")])
    assert set(found) == {(first, "same-id"), (second, "same-id")}


@pytest.mark.parametrize(("single_attempt", "attempts"), [(False, 10), (True, 1)])
def test_a_caller_with_retries_of_its_own_gets_a_single_attempt(
    app: Application[str],
    monkeypatch: pytest.MonkeyPatch,
    single_attempt: bool,
    attempts: int,
) -> None:
    recorder = app.recorder
    assert isinstance(recorder, CreditsPostgresRecorder)
    calls: list[int] = []

    def database_gone(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(recorder, "_save_batch", database_gone)
    # The library's pause between its tries.
    monkeypatch.setattr(eventsourcing.utils, "sleep", lambda seconds: None)
    with pytest.raises(OperationalError):
        app.save(
            Counter(f"gone-{uuid.uuid4().hex[:8]}"),
            writes=BatchWrites(single_attempt=single_attempt),
        )
    assert len(calls) == attempts


@pytest.mark.parametrize("conflict", ["receipt", "position", "version", "stale", "none"])
def test_each_conflict_is_raised_as_that_conflict_and_writes_nothing(
    app: Application[str], conflict: str
) -> None:
    """A save is one statement (infra/event_store/batch_function.py): each way it can conflict
    comes back as its own error, and nothing of the save is kept."""
    recorder = app.recorder
    assert isinstance(recorder, CreditsPostgresRecorder)
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    bystander = f"acct-{uuid.uuid4().hex[:8]}"
    group = f"group-{uuid.uuid4().hex[:8]}"
    app.save(
        Counter(id=account_id),
        Counter(id=bystander),
        writes=BatchWrites(
            receipts=[_receipt(account_id, "cmd-1")],
            kafka_positions=[KafkaPosition(group, "commands", 0, None, 10)],
        ),
    )
    counter: Counter = app.repository.get(account_id)
    counter.increment()
    receipt = {"receipt": "cmd-1"}.get(conflict, "cmd-2")
    expected_offset = 9 if conflict == "position" else 10
    if conflict == "version":  # another writer took version 2 meanwhile
        other: Counter = app.repository.get(account_id)
        other.increment()
        app.save(other)
    # The bystander was read at version 1; a stale read says it was read at 0.
    read_versions = {bystander: 0 if conflict == "stale" else 1}
    raised = {
        "receipt": ReceiptConflict,
        "position": KafkaPositionConflict,
        "version": IntegrityError,
        "stale": StaleRead,
    }.get(conflict)
    writes = BatchWrites(
        receipts=[_receipt(account_id, receipt)],
        kafka_positions=[KafkaPosition(group, "commands", 0, expected_offset, 11)],
        read_versions=read_versions,
        single_attempt=True,
    )
    if raised is None:
        recordings = app.save(counter, writes=writes)
        assert [r.notification.originator_version for r in recordings] == [2]
        assert recorder.select_kafka_positions(group, "commands") == {0: 11}
        return
    with pytest.raises(raised) as error:
        app.save(counter, writes=writes)
    assert type(error.value) is raised
    assert recorder.select_kafka_positions(group, "commands") == {0: 10}
    assert (account_id, "cmd-2") not in recorder.select_receipts([(account_id, "cmd-2")])
