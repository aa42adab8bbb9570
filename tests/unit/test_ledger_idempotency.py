"""Each command applies at most once (DESIGN §2.3): retries, conflicts, batches, rival writers."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import IntegrityError

from services.ledger.service import LedgerService
from tests.kit.ledger import Ledger
from tests.unit.test_ledger_rules import CATALOG


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(CATALOG)


def test_a_retry_answers_duplicate_with_the_original_result_and_changes_nothing(ledger):
    ledger.ok("open_account", plan="basic")
    first = ledger.send("consume", command_id="once", action="call", quantity=2)
    version = ledger.version()
    ledger.clock.advance(days=1)  # even after the day renewed, the answer is the original one
    again = ledger.send("consume", command_id="once", action="call", quantity=2)
    assert again.status == "duplicate"
    assert again.result == first.result and again.balances == first.balances
    assert ledger.version() == version


def test_the_same_command_id_with_another_payload_is_a_conflict(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.send("consume", command_id="once", action="call", quantity=2)
    reply = ledger.send("consume", command_id="once", action="call", quantity=3)
    assert reply.status == "rejected" and reply.error.code == "idempotency_conflict"
    assert ledger.available("credits") == 8


def test_a_retry_that_would_now_be_refused_still_answers_duplicate(ledger):
    """Receipts are read only when a batch needs them (see LedgerService._decide_and_save):
    a retry decided afresh as a refusal writes nothing that could conflict, so it is checked."""
    ledger.ok("open_account", plan="basic")
    first = ledger.send("consume", command_id="drain", credit_type="credits", amount=10)
    assert first.status == "accepted" and ledger.available("credits") == 0
    version = ledger.version()

    again = ledger.send("consume", command_id="drain", credit_type="credits", amount=10)
    assert again.status == "duplicate" and again.balances == first.balances
    other = ledger.send("consume", command_id="drain", credit_type="credits", amount=9)
    assert other.status == "rejected" and other.error.code == "idempotency_conflict"
    assert ledger.version() == version


def test_a_rejected_command_is_decided_afresh_on_retry(ledger):
    ledger.ok("open_account", plan="basic")
    ledger.ok("consume", credit_type="credits", amount=10)
    assert ledger.send("consume", command_id="later", action="call").status == "rejected"
    ledger.clock.advance(days=1)
    assert ledger.send("consume", command_id="later", action="call").status == "accepted"


def test_a_batch_saves_every_account_at_once_and_answers_duplicates_inside_it(ledger):
    ledger.ok("open_account", "a", plan="basic")
    commands = [
        {"type": "open_account", "command_id": "o", "account_id": "b", "plan": "basic"},
        {"type": "consume", "command_id": "x", "account_id": "a", "action": "call"},
        {"type": "consume", "command_id": "x", "account_id": "a", "action": "call"},
        {"type": "consume", "command_id": "y", "account_id": "b", "action": "call", "quantity": 2},
        {"type": "consume", "command_id": "z", "account_id": "b", "action": "nope"},
        {"type": "consume", "command_id": "bad", "account_id": "b", "quantity": 1.5},
    ]
    replies = ledger.service.handle_many(commands)
    assert [r.status for r in replies] == [
        "accepted",
        "accepted",
        "duplicate",
        "accepted",
        "rejected",
        "rejected",
    ]
    assert replies[5].error.code == "invalid_command" and replies[5].command_id == "bad"
    assert (ledger.available("credits", "a"), ledger.available("credits", "b")) == (9, 8)
    assert None not in (replies[1].position, replies[3].position)
    assert replies[2].position is None, "a duplicate wrote nothing"


def test_a_concurrent_writer_is_retried_and_the_receipt_then_answers_duplicate(ledger):
    ledger.ok("open_account", plan="basic")
    command = {"type": "consume", "command_id": "race", "account_id": "acct", "action": "call"}
    rival = LedgerService(ledger.app, ledger.catalog, ledger.clock)
    real_save = ledger.app.save
    attempts: list[tuple[object, ...]] = []

    def save_after_a_rival_wins(*objs, **kwargs):
        if not attempts:  # another process applies the same command between load and save
            ledger.app.save = real_save
            assert rival.handle(command).status == "accepted"
            ledger.app.save = save_after_a_rival_wins
        attempts.append(objs)
        return real_save(*objs, **kwargs)

    ledger.app.save = save_after_a_rival_wins
    reply = ledger.service.handle(command)

    assert reply.status == "duplicate" and len(attempts) == 2
    assert ledger.available("credits") == 9, "applied once"


def test_past_the_bound_a_conflict_is_raised(ledger):
    ledger.ok("open_account", plan="basic")

    def always_conflicts(*objs, **kwargs):
        raise IntegrityError("version conflict")

    ledger.app.save = always_conflicts
    with pytest.raises(IntegrityError):
        ledger.send("consume", action="call")
