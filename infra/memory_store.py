"""In-memory event store for unit and property tests: `PERSISTENCE_MODULE=infra.memory_store`.

The eventsourcing POPO recorders, plus the receipt contract of `infra/receipts.py`: receipts
are stored with the events under one lock, all or nothing, exactly as the PostgreSQL recorder
stores them in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing import popo
from eventsourcing.persistence import ApplicationRecorder, StoredEvent

from infra.event_store.batch_writes import writes_of
from infra.receipts import Receipt, ReceiptConflict


class MemoryApplicationRecorder(popo.POPOApplicationRecorder):
    def __init__(self) -> None:
        super().__init__()
        self._receipts: dict[tuple[str, str], Receipt] = {}

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        keys = [(r.account_id, r.command_id) for r in writes_of(kwargs).receipts]
        if len(set(keys)) < len(keys):
            raise ReceiptConflict(f"receipts repeat a command: {keys}")
        for key in keys:
            if key in self._receipts:
                raise ReceiptConflict(f"receipt already recorded: {key}")

    def _update_table(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._update_table(stored_events, **kwargs)
        for receipt in writes_of(kwargs).receipts:
            self._receipts[(receipt.account_id, receipt.command_id)] = receipt
        return notification_ids

    def select_receipts(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Receipt]:
        with self._database_lock:
            return {key: self._receipts[key] for key in keys if key in self._receipts}


class MemoryFactory(popo.POPOFactory):
    def application_recorder(self) -> ApplicationRecorder:
        return MemoryApplicationRecorder()
