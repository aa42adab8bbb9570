"""Command receipts: the record that makes every `command_id` apply at most once.

A receipt is written in the same database transaction as the events the command produced, so
either both exist or neither does. The event-store recorders (PostgreSQL in `infra/event_store/`,
in-memory in `infra/memory_store.py`) take receipts in the typed object a save carries beside
its events: `Application.save(..., writes=BatchWrites(receipts=[...]))`
(`infra/event_store/batch_writes.py`).

Only accepted commands get a receipt: a rejected command changes nothing, so a retry of it is
decided afresh (as TigerBeetle does for failed transfers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from eventsourcing.persistence import IntegrityError


class Receipt(NamedTuple):
    """Immutable; a named tuple, as one is built per command (see `StoredReply`)."""

    account_id: str
    command_id: str
    # SHA-256 hex of the command's canonical JSON: a retry with another payload is a conflict.
    payload_sha256: str
    # The original reply, as JSON text, returned unchanged (status `duplicate`) on a retry.
    reply_json: str


class ReceiptConflict(IntegrityError):
    """Raised by `insert_events` when a receipt for (account_id, command_id) already exists.

    The whole transaction (events included) is rolled back. It is an `IntegrityError`, like the
    version conflict of a concurrent writer, so the service layer treats both the same way: reload
    and decide again (bounded), which then finds the receipt and answers `duplicate` or
    `idempotency_conflict`.
    """


class ReceiptReader(Protocol):
    def select_receipts(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Receipt]: ...
