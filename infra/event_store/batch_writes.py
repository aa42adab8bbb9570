"""What a save writes beside the events, in the same transaction: one typed object.

eventsourcing's `Application.save(*aggregates, **kwargs)` hands its keywords to the recorder's
`insert_events`. The service passes exactly one, `writes=BatchWrites(...)`, so what travels
through the library is named and typed end to end, and a misspelt field fails where it is
written rather than being ignored by the recorder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.event_store.kafka_tables import KafkaPosition, StoredReply
from infra.receipts import Receipt


@dataclass(frozen=True)
class BatchWrites:
    # One per command decided: the idempotency record (infra/receipts.py).
    receipts: Sequence[Receipt] = ()
    # The Kafka position each partition's records move to, behind a compare-and-set.
    kafka_positions: Sequence[KafkaPosition] = ()
    # The replies of the batch, sent after the commit (a crash cannot lose them).
    kafka_replies: Sequence[StoredReply] = ()
    # Accounts decided on but unchanged: the version each was read at, checked at the save.
    read_versions: Mapping[str, int] = field(default_factory=dict)
    # (account id, command id) → W3C traceparent, stored with the receipts for the relay.
    command_traces: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # No retry inside the recorder: the caller retries, answering Kafka in between.
    single_attempt: bool = False


NO_WRITES = BatchWrites()


def writes_of(kwargs: Mapping[str, Any]) -> BatchWrites:
    """The `writes` a save passed through the library (none: nothing beside the events)."""
    writes = kwargs.get("writes", NO_WRITES)
    assert isinstance(writes, BatchWrites), f"writes must be BatchWrites, not {type(writes)}"
    return writes
