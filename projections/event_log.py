"""The event store's notification log, read with asyncpg and decoded by the ledger's mapper.

The recorder inserts under a table lock, so notification ids are gap-free and commit in order:
reading `notification_id > position` never skips an event committed later with a lower id.

Every decoded event is made storable (`projections/storable.py`) before anyone sees it. A row
this code cannot decode (an event kind it does not know, a state it cannot parse) becomes an
`UndecodableEvent` at its position, never an exception that would stop the whole batch: the
projections record it as skipped (`projections/applying.py`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import resolve_topic

from domain.account import Account
from infra.ledger_application import LedgerApplication
from infra.process_event_store import borrow_event_store
from infra.settings import Settings
from projections.storable import MESSAGE_BYTES, storable_event, storable_text


@dataclass(frozen=True)
class UndecodableEvent:
    """Stands for a stored event that could not be decoded; no projection applies it. Not an
    `Account.Event`: nothing that lists the event kinds (the AsyncAPI document) must see it."""

    originator_id: str
    originator_version: int
    topic: str
    error: str


@dataclass(frozen=True)
class Logged:
    position: int
    event: Account.Event | UndecodableEvent


class EventLog:
    def __init__(self, mapper: Mapper[Any], table: str, channel: str) -> None:
        self.mapper = mapper
        self.table = table
        # The recorder NOTIFYs this channel in every insert transaction.
        self.channel = channel
        self._fast = _FastDecoder.for_mapper(mapper)

    async def fetch(self, conn: asyncpg.Connection, after: int, limit: int) -> list[Any]:
        """Raw rows after `after`, at most `limit` (decode them with `decode`)."""
        assert limit > 0
        return list(
            await conn.fetch(
                "SELECT notification_id, originator_id, originator_version, topic, state "
                f"FROM {self.table} WHERE notification_id > $1 ORDER BY notification_id LIMIT $2",
                after,
                limit,
            )
        )

    async def fetch_range(self, conn: asyncpg.Connection, after: int, upto: int) -> list[Any]:
        return list(
            await conn.fetch(
                "SELECT notification_id, originator_id, originator_version, topic, state "
                f"FROM {self.table} WHERE notification_id > $1 AND notification_id <= $2 "
                "ORDER BY notification_id",
                after,
                upto,
            )
        )

    def decode(self, rows: Sequence[Any]) -> list[Logged]:
        """Each row's event, storable; an `UndecodableEvent` for a row that does not decode."""
        fast = self._fast
        logged = []
        for row in rows:
            try:
                if fast is not None:
                    event = fast.decode(row[1], row[2], row[3], row[4])
                else:
                    event = self.decode_with_mapper(row)
                if not isinstance(event, Account.Event):
                    raise TypeError(f"{type(event).__name__} is not an account event")
                logged.append(Logged(row[0], storable_event(event, row[4])))
            except Exception as error:  # anything in a stored row: it must not stop the log
                logged.append(Logged(row[0], _undecodable(row, error)))
        return logged

    def decode_with_mapper(self, row: Any) -> Account.Event:
        stored = StoredEvent(row[1], row[2], row[3], row[4])
        event: Account.Event = self.mapper.to_domain_event(stored)  # type: ignore[assignment]
        return event

    async def read(self, conn: asyncpg.Connection, after: int, limit: int) -> list[Logged]:
        return self.decode(await self.fetch(conn, after, limit))

    async def max_position(self, conn: asyncpg.Connection) -> int:
        value = await conn.fetchval(f"SELECT max(notification_id) FROM {self.table}")
        return int(value or 0)


def _undecodable(row: Any, error: Exception) -> UndecodableEvent:
    return UndecodableEvent(
        originator_id=storable_text(str(row[1])),
        originator_version=int(row[2]),
        topic=storable_text(str(row[3])),
        error=storable_text(f"{type(error).__name__}: {error}", MESSAGE_BYTES),
    )


_JSON = json.JSONDecoder().decode


class _FastDecoder:
    """The mapper's decoding, minus its per-object JSON hook: a rebuild decodes a million events.

    Same result as `Mapper.to_domain_event` (a test compares them on every stored event): the
    JSON is parsed without a hook, then only `{"_type_", "_data_"}` objects (in fields, and in
    lists of objects such as breakdowns) go through the transcoder's registered transcodings.
    Used only when the mapper neither encrypts nor compresses.
    """

    def __init__(self, names: dict[str, Any]) -> None:
        self.names = names
        self.classes: dict[str, type] = {}

    @classmethod
    def for_mapper(cls, mapper: Mapper[Any]) -> _FastDecoder | None:
        names = getattr(mapper.transcoder, "names", None)
        if mapper.cipher is not None or mapper.compressor is not None or names is None:
            return None
        return cls(names)

    def decode(self, originator_id: str, version: int, topic: str, state: bytes) -> Any:
        fields: dict[str, Any] = _JSON(state.decode())
        # Most events hold transcoded objects (times) only as top-level fields: decode those
        # directly, and walk nested containers only when the text holds more of them.
        expected = state.count(b'"_type_"')
        decoded = 0
        for key, value in fields.items():
            if type(value) is dict and len(value) == 2 and "_type_" in value:
                data = value.get("_data_")
                if type(data) is str:
                    fields[key] = self.names[value["_type_"]].decode(data)
                    decoded += 1
        if decoded < expected:
            for key, value in fields.items():
                if type(value) is dict or type(value) is list:
                    fields[key] = self._revive(value)
        cls = self.classes.get(topic)
        if cls is None:
            cls = self.classes[topic] = resolve_topic(topic)
        fields["originator_id"] = originator_id
        fields["originator_version"] = version
        class_version = getattr(cls, "class_version", 1)
        from_version = fields.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(fields)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", fields)
        return event

    def _revive(self, value: Any) -> Any:
        """Decode transcoded objects inside `value`, in place (most hold none)."""
        if type(value) is dict:
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                return self.names[value["_type_"]].decode(self._revive(value["_data_"]))
            for key, item in value.items():
                if type(item) is dict or type(item) is list:
                    value[key] = self._revive(item)
        elif type(value) is list:
            for index, item in enumerate(value):
                if type(item) is dict or type(item) is list:
                    value[index] = self._revive(item)
        return value


def open_event_log(settings: Settings) -> tuple[EventLog, LedgerApplication]:
    """The log of the process's event-store application on `settings`' database (creating its
    tables if new). The application is returned so the caller can give it back
    (`infra.process_event_store.give_back_event_store`); only its mapper and names are used."""
    app = borrow_event_store(settings)
    recorder: Any = app.recorder
    table = f"{recorder.datastore.schema}.{recorder.events_table_name}"
    return EventLog(app.mapper, table, recorder.channel_name), app
