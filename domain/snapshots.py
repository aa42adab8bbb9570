"""The account's snapshot: its state as plain JSON data (class_version 2), and the upcast of the
snapshots stored before the account was split into value objects (class_version 1).

Version 2 holds only what JSON and eventsourcing's default transcoder carry (objects, lists,
strings, integers, ISO times), each value object as an object of its fields, so snapshots need
no transcoding of domain classes. Version 1 was the account's attributes as they were, with
`Lot`, `Hold` and `AllocationState` objects decoded by the transcodings that
infra/event_mapper.py registers; those three keep their fields, so old snapshots still
decode, and `upcast_v1` maps the rest (dicts of top-ups, settings, counters) onto today's
value objects. A snapshot is only a shortcut: an account loads the same from its events alone.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from eventsourcing.domain import BaseAggregate, CanSnapshotAggregate

from domain.allocations import Allocations, AllocationState, ScheduledPlan
from domain.holds import Hold, Holds
from domain.lots import Lot, Lots
from domain.owed import Owed
from domain.top_ups import MonthlyCount, TopUpRequest, TopUps, TopUpSettings
from domain.usage import DailyUsage

CLASS_VERSION = 2

# Attributes kept as they are: strings, integers, times, flat dicts of them.
_PLAIN = (
    "_created_on",
    "_modified_on",
    "plan",
    "catalog_version",
    "anchor_at",
    "low_balance_fired",
    "migrated_from",
    "purchases",
)


@dataclass(frozen=True)
class AccountSnapshot(CanSnapshotAggregate[str]):
    """An account at a version: `topic` names its class, `state` is `encode(vars(account))`."""

    # Where the class was first defined: the topic stored snapshots carry (see domain/events.py).
    TOPIC = "domain.account:Account.Snapshot"

    originator_id: str
    originator_version: int
    timestamp: datetime
    topic: str
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: Any) -> AccountSnapshot:
        """The library's snapshot of the account's attributes, encoded as plain data."""
        snapshot = super().take(aggregate)
        return replace(snapshot, state=encode(snapshot.state))

    def mutate(self, _: None) -> BaseAggregate[str]:
        """The library rebuilds the account from its attributes, decoded here first."""
        return super(AccountSnapshot, replace(self, state=decode(self.state))).mutate(None)


def encode(attributes: dict[str, Any]) -> dict[str, Any]:
    """The snapshot state of an account, from its attributes (`vars(account)`)."""
    lots: Lots = attributes["lots"]
    holds: Holds = attributes["holds"]
    allocations: Allocations = attributes["allocations"]
    owed: Owed = attributes["owed"]
    top_ups: TopUps = attributes["top_ups"]
    scheduled: ScheduledPlan | None = attributes["scheduled_plan"]
    state = {name: attributes[name] for name in _PLAIN}
    state |= {
        "class_version": CLASS_VERSION,
        "lots": {"seq": lots.seq, "lots": [_fields(lot) for lot in lots.values()]},
        "holds": {"open": [_fields(h) for h in holds.values()], "closed": dict(holds.closed)},
        "allocations": [_fields(a) for _, a in allocations.items()],
        "owed": {"overdraft": dict(owed.overdraft), "debt": dict(owed.debt)},
        "usage": _fields(attributes["usage"]),
        "top_ups": {
            "seq": top_ups.seq,
            "pending": [_fields(r) for r in top_ups.pending.values()],
            "failed": [_fields(r) for r in top_ups.failed.values()],
            "settings": {ct: _fields(s) for ct, s in top_ups.settings.items()},
            "auto_requested": {ct: _fields(c) for ct, c in top_ups.auto_requested.items()},
        },
        "scheduled_plan": None if scheduled is None else _fields(scheduled),
        "resource_limits": dict(attributes["resource_limits"]),
    }
    return state


def decode(state: dict[str, Any]) -> dict[str, Any]:
    """The attributes of an account, from a snapshot state of any version."""
    state = dict(state)
    version = state.pop("class_version", 1)
    if version == 1:
        return upcast_v1(state)
    assert version == CLASS_VERSION, version
    lots, holds, top_ups = state["lots"], state["holds"], state["top_ups"]
    scheduled = state["scheduled_plan"]
    return {name: state[name] for name in _PLAIN} | {
        "lots": Lots({lot["lot_id"]: Lot(**lot) for lot in lots["lots"]}, lots["seq"]),
        "holds": Holds({h["hold_id"]: Hold(**h) for h in holds["open"]}, holds["closed"]),
        "allocations": Allocations(
            {a["credit_type"]: AllocationState(**a) for a in state["allocations"]}
        ),
        "owed": Owed(**state["owed"]),
        "usage": DailyUsage(**state["usage"]),
        "top_ups": TopUps(
            pending={r["top_up_id"]: TopUpRequest(**r) for r in top_ups["pending"]},
            failed={r["top_up_id"]: TopUpRequest(**r) for r in top_ups["failed"]},
            settings={ct: TopUpSettings(**s) for ct, s in top_ups["settings"].items()},
            auto_requested={ct: MonthlyCount(**c) for ct, c in top_ups["auto_requested"].items()},
            seq=top_ups["seq"],
        ),
        "scheduled_plan": None if scheduled is None else ScheduledPlan(**scheduled),
        # Absent from snapshots taken before accounts had resource limits.
        "resource_limits": dict(state.get("resource_limits", {})),
    }


def upcast_v1(old: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (the account's attributes before the split) onto today's attributes."""

    def top_up(top_up_id: str, request: dict[str, Any]) -> TopUpRequest:
        return TopUpRequest(top_up_id=top_up_id, **request)

    scheduled = old["scheduled_plan"]
    return {name: old[name] for name in _PLAIN} | {
        "lots": Lots(old["lots"], old["lot_seq"]),
        "holds": Holds(old["holds"], old["closed_holds"]),
        "allocations": Allocations(old["allocations"]),
        "owed": Owed(old["overdraft"], old["debt"]),
        "usage": DailyUsage(old["usage_day"], old["action_usage"], old["resource_usage"]),
        "top_ups": TopUps(
            pending={k: top_up(k, v) for k, v in old["pending_top_ups"].items()},
            failed={k: top_up(k, v) for k, v in old["failed_top_ups"].items()},
            settings={ct: TopUpSettings(**s) for ct, s in old["top_up_settings"].items()},
            auto_requested={ct: MonthlyCount(**c) for ct, c in old["auto_top_ups"].items()},
            seq=old["top_up_seq"],
        ),
        "scheduled_plan": None if scheduled is None else ScheduledPlan(**scheduled),
        "resource_limits": {},
    }


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
