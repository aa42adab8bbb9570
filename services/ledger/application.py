"""The eventsourcing application the ledger runs on, configured from the environment.

Environment (besides eventsourcing's own, e.g. PERSISTENCE_MODULE and ORIGINATOR_ID_TYPE):
- LEDGER_SNAPSHOT_INTERVAL: snapshot an account every N events (default 200; 0 turns it off),
  so loading a long stream reads one snapshot and at most N-1 events.
- AGGREGATE_CACHE_MAXSIZE: accounts kept in memory (default 10000); a cached account is
  fast-forwarded with the events written since, so other writers stay visible.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder, Transcoding
from eventsourcing.utils import Environment, EnvType

from domain.account import Account, AllocationState
from domain.lots import Hold, Lot

DEFAULT_SNAPSHOT_INTERVAL = 200


class DataclassAsDict(Transcoding):
    """Snapshots hold the account's lots, holds and allocations: stored as plain objects."""

    def __init__(self, cls: type) -> None:
        self.type = cls
        self.name = cls.__name__

    def encode(self, obj: Any) -> dict[str, Any]:
        return {f.name: getattr(obj, f.name) for f in fields(obj)}

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


class LedgerApplication(Application[str]):
    name = "Ledger"
    env = {"AGGREGATE_CACHE_MAXSIZE": "10000"}

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        environment = super().construct_env(name, env)
        interval = int(environment.get("LEDGER_SNAPSHOT_INTERVAL", str(DEFAULT_SNAPSHOT_INTERVAL)))
        if interval > 0:
            environment["IS_SNAPSHOTTING_ENABLED"] = "y"
            # Per instance, from the environment (the library reads it as a class variable).
            setattr(self, "snapshotting_intervals", {Account: interval})  # noqa: B010
        return environment

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        for cls in (Lot, Hold, AllocationState):
            transcoder.register(DataclassAsDict(cls))
