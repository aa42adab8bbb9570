"""How the ledger's stored events and snapshots decode: the transcodings of its application,
and its mapper for a process that reads stored rows without opening the application (the API
reading an account's events for `?as_of=`)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    Transcoding,
    UUIDAsHex,
)

from domain.account import AllocationState
from domain.lots import Hold, Lot


class DataclassAsDict(Transcoding):
    """Snapshots hold the account's lots, holds and allocations: stored as plain objects."""

    def __init__(self, cls: type) -> None:
        self.type = cls
        self.name = cls.__name__

    def encode(self, obj: Any) -> dict[str, Any]:
        return {f.name: getattr(obj, f.name) for f in fields(obj)}

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


def register_ledger_transcodings(transcoder: JSONTranscoder) -> None:
    """The library's transcodings, and the snapshots' lots, holds and allocations (v1)."""
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    for cls in (Lot, Hold, AllocationState):
        transcoder.register(DataclassAsDict(cls))


def ledger_mapper() -> Mapper[str]:
    """The ledger application's mapper without the application: no connection is opened. The
    ledger's environment sets no cipher and no compressor, and the mapper class is the
    library's default."""
    transcoder = JSONTranscoder()
    register_ledger_transcodings(transcoder)
    return Mapper(transcoder=transcoder)
