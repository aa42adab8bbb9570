"""Kafka records of `credits.commands`: decoded into commands, or into a reason for the DLQ.

Pure: no I/O. The consumer (services/ledger/consumer.py) does the sending and saving.

A record is taken as Kafka delivers it: key, value and header values are bytes or null, and
nothing is assumed of them. `decode` never raises: whatever a producer sent (no value, bytes
that are not UTF-8, JSON nested deeper than Python's recursion limit, text PostgreSQL cannot
hold, a key that is not the account id, headers of any kind) ends as a `Decoded` command or a
`Poison` with a DLQ code and a reason. The `content-type` header is not read: the contract is
that the value is a JSON command, and a value is judged by what it holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord

from domain.commands import MAX_COMMAND_BYTES, Command, parse_command
from domain.errors import ErrorCode, LedgerError
from domain.replies import Reply
from infra.dlq import DlqCode
from services.ledger.service import best_effort_ids

# Kafka's own rule for topic names: a reply_to header naming anything else is ignored.
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Kafka refuses these two names although they match the rule above.
_NOT_TOPICS = frozenset({".", ".."})


@dataclass(frozen=True)
class CommandRecord:
    """The parts of a Kafka record the ledger reads: bytes or None, as Kafka delivers them.

    Header names are text (Kafka's protocol says UTF-8); the few records whose names are not
    (see services/ledger/unreadable.py) carry them with their bytes escaped as surrogates.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    # Why the record could not be read at all (services/ledger/unreadable.py); None: it was.
    unreadable: str | None = None
    # The record's timestamp (milliseconds since the epoch; the producer's, by default):
    # where the command → reply latency starts.
    timestamp_ms: int | None = None

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> CommandRecord:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple(record.headers),
            timestamp_ms=record.timestamp,
        )

    def header(self, name: str) -> bytes | None:
        """The first header of that name; None when absent or null."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_names_are_utf8(self) -> bool:
        try:
            for name, _ in self.headers:
                name.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True


@dataclass(frozen=True)
class Decoded:
    record: CommandRecord
    command: Command


@dataclass(frozen=True)
class Poison:
    """A record that is not a command. It goes to the DLQ; its sender may get a rejection."""

    record: CommandRecord
    dlq_code: DlqCode
    message: str
    reply: Reply | None


def decode(record: CommandRecord) -> Decoded | Poison:
    """The command a record holds, or why it holds none. Never raises."""
    try:
        return _decode(record)
    except Exception as error:  # a record must never stop the ledger: name it instead
        message = f"the record could not be read: {type(error).__name__}: {error}"
        return _poison(record, DlqCode.UNPROCESSABLE, message, None)


def _decode(record: CommandRecord) -> Decoded | Poison:
    if record.unreadable is not None:
        return _poison(record, DlqCode.UNDECODABLE, record.unreadable, None)
    if not record.header_names_are_utf8():
        return _poison(record, DlqCode.UNDECODABLE, "a header name is not UTF-8", None)
    value = record.value
    if value is None:
        return _poison(record, DlqCode.INVALID_JSON, "the record has no value (null)", None)
    if len(value) > MAX_COMMAND_BYTES:
        message = f"{len(value)} bytes > {MAX_COMMAND_BYTES}"
        return _poison(record, DlqCode.OVERSIZED, message, None)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        return _poison(record, DlqCode.UNDECODABLE, f"not UTF-8: {error.reason}", None)
    try:
        command = parse_command(text)
    except LedgerError as error:
        return _poison(record, _dlq_code(error), error.message, text)
    # Order per account holds only if every producer keys by account id (DESIGN §2.1).
    if record.key != command.account_id.encode():
        message = f"the record key must be the account id {command.account_id!r}"
        return _poison(record, DlqCode.WRONG_KEY, message, text)
    return Decoded(record=record, command=command)


def reply_topic(record: CommandRecord, default_topic: str) -> str:
    """Where the reply goes: a well-formed `reply_to`, else the default replies topic.

    Whether that topic exists is the sender's business (services/ledger/replies.py).
    """
    requested = record.header("reply_to")
    if requested is not None:
        try:
            name = requested.decode("ascii")
        except UnicodeDecodeError:
            return default_topic
        if _TOPIC_NAME.match(name) and name not in _NOT_TOPICS:
            return name
    return default_topic


def _dlq_code(error: LedgerError) -> DlqCode:
    if "Invalid JSON" in error.message:  # pydantic's wording for bytes that are not JSON
        return DlqCode.INVALID_JSON
    return DlqCode.INVALID_COMMAND


def _poison(record: CommandRecord, dlq_code: DlqCode, message: str, text: str | None) -> Poison:
    # Messages may quote what they refuse: the reply carrying one must be valid JSON text.
    message = message.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()
    ids = best_effort_ids(text) if text is not None else {}
    # A rejection is worth sending only if the sender can match it to what it sent.
    if "command_id" in ids or record.header("correlation_id") is not None:
        reply: Reply | None = Reply.rejected(
            command_id=ids.get("command_id", ""),
            account_id=ids.get("account_id", ""),
            error=LedgerError(ErrorCode.invalid_command, message),
        )
    else:
        reply = None
    return Poison(record=record, dlq_code=dlq_code, message=message, reply=reply)
