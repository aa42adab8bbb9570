"""Kafka records of `credits.commands`: decoded into commands, or into a reason for the DLQ.

Pure: no I/O. The consumer (services/ledger/consumer.py) does the sending and saving.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from aiokafka.structs import ConsumerRecord

from domain.commands import MAX_COMMAND_BYTES, Command, parse_command
from domain.errors import ErrorCode, LedgerError
from domain.replies import Reply
from services.ledger.service import best_effort_ids

# Kafka's own rule for topic names: a reply_to header naming anything else is ignored.
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class DlqCode(StrEnum):
    """The DLQ's `error.code` for a record that is not a command: finer than the reply's
    `invalid_command`, so ops can tell a broken producer from a bad payload."""

    OVERSIZED = "oversized"
    UNDECODABLE = "undecodable"
    INVALID_JSON = "invalid_json"
    INVALID_COMMAND = "invalid_command"
    WRONG_KEY = "wrong_key"


@dataclass(frozen=True)
class CommandRecord:
    """The parts of a Kafka record the ledger reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> CommandRecord:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple(record.headers),
        )

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


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
    value = record.value or b""
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
    requested = record.header("reply_to")
    if requested is not None:
        try:
            name = requested.decode("ascii")
        except UnicodeDecodeError:
            return default_topic
        if _TOPIC_NAME.match(name):
            return name
    return default_topic


def _dlq_code(error: LedgerError) -> DlqCode:
    if "Invalid JSON" in error.message:  # pydantic's wording for bytes that are not JSON
        return DlqCode.INVALID_JSON
    return DlqCode.INVALID_COMMAND


def _poison(record: CommandRecord, dlq_code: DlqCode, message: str, text: str | None) -> Poison:
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
