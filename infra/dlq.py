"""The one way a record goes to the dead-letter topic (`credits.dlq`), and the one list of codes.

A DLQ record is the original record (key, value, headers) plus headers saying why and where it
came from: `error.code`, `error.message`, `source.topic`, `source.partition`, `source.offset`.
Whatever the original holds, the DLQ record is always small enough to send: a broker accepts
records up to its `message.max.bytes` (1 MiB by default) and our headers would push a record at
that size over it, so the DLQ send itself would fail and the record could never be put anywhere.
So the parts are bounded:
- a value over `MAX_VALUE_BYTES` keeps its first `MAX_VALUE_BYTES`, and the headers
  `original.size` and `original.sha256` describe the whole (`original.truncated: value`);
- a key over `MAX_KEY_BYTES` is replaced by its sha256 (`original.truncated: key`);
- the original headers are kept while they fit in `MAX_HEADERS_BYTES`, each counted with
  `HEADER_OVERHEAD_BYTES` for its framing so that many empty headers cannot add up either
  (`original.truncated: headers` when some were dropped). A null header value is kept as an
  empty one; a header name that is not UTF-8 is kept with its bytes escaped (`\\xff`).
  `credits dlq replay` sends key, value and kept headers back, less the ones named here, and
  refuses a record with any part truncated: what it would send is not what was sent.
So a DLQ record is at most MAX_VALUE_BYTES + MAX_KEY_BYTES + MAX_HEADERS_BYTES plus our own
headers (under 2 KiB): about 580 KiB, whatever the original.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

# Below the broker's default 1 MiB with room for the key and headers.
MAX_VALUE_BYTES = 512 * 1024
MAX_KEY_BYTES = 4 * 1024
MAX_HEADERS_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 1000
# What Kafka spends on each header besides its name and value (two varint lengths, at most).
HEADER_OVERHEAD_BYTES = 10
# Headers this module writes: never copied from the original, removed again on replay.
OWN_HEADER_PREFIXES = ("error.", "source.", "original.")


class DlqCode(StrEnum):
    """Why a record is in the DLQ (`error.code`). Stable: ops alert and filter on them."""

    # The ledger (credits.commands): the record is not a command.
    OVERSIZED = "oversized"
    UNDECODABLE = "undecodable"
    INVALID_JSON = "invalid_json"
    INVALID_COMMAND = "invalid_command"
    WRONG_KEY = "wrong_key"
    # A command whose application failed in a way retrying cannot fix (not an outage: a
    # defect that this record alone triggers); the rest of its batch was applied.
    UNPROCESSABLE = "unprocessable"
    # The payment consumer (stripe.events, credits.events, its replies topic).
    INVALID_STRIPE_EVENT = "invalid_stripe_event"
    INVALID_METADATA = "invalid_metadata"
    INVALID_CLOUD_EVENT = "invalid_cloud_event"
    INVALID_REPLY = "invalid_reply"
    RETRIES_EXHAUSTED = "retries_exhausted"
    # A record that made our code fail in a way no rule foresaw: kept, and the partition moves on.
    UNEXPECTED_ERROR = "unexpected_error"


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter(
    *,
    code: DlqCode,
    message: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> DeadLetter:
    own: list[tuple[str, bytes]] = [
        ("error.code", code.value.encode()),
        ("error.message", _text(message, MAX_MESSAGE_BYTES)),
        ("source.topic", _text(topic, 249)),
        ("source.partition", str(partition).encode()),
        ("source.offset", str(offset).encode()),
    ]
    truncated: list[str] = []
    if value is not None and len(value) > MAX_VALUE_BYTES:
        own += [
            ("original.size", str(len(value)).encode()),
            ("original.sha256", hashlib.sha256(value).hexdigest().encode()),
        ]
        value = value[:MAX_VALUE_BYTES]
        truncated.append("value")
    if key is not None and len(key) > MAX_KEY_BYTES:
        own.append(("original.key_size", str(len(key)).encode()))
        key = hashlib.sha256(key).hexdigest().encode()
        truncated.append("key")
    kept: list[tuple[str, bytes]] = []
    budget = MAX_HEADERS_BYTES
    for name, header_value in headers:
        if name.startswith(OWN_HEADER_PREFIXES):
            continue
        name = _text(name, MAX_HEADERS_BYTES).decode()
        size = len(name.encode()) + len(header_value or b"") + HEADER_OVERHEAD_BYTES
        if size > budget:
            truncated.append("headers")
            break
        budget -= size
        # Kafka headers may be null; the DLQ keeps them as empty values.
        kept.append((name, header_value or b""))
    if truncated:
        own.append(("original.truncated", ",".join(truncated).encode()))
    return DeadLetter(key=key, value=value, headers=kept + own)


def replayable(headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """A DLQ record's headers less the ones `dead_letter` added: what the original carried."""
    return [(name, value) for name, value in headers if not name.startswith(OWN_HEADER_PREFIXES)]


@dataclass(frozen=True)
class DlqRecord:
    """A record read back from the DLQ topic, with what `dead_letter` wrote about it.

    `value` is None when the reader chose not to keep it (`credits dlq list`) as well as when
    the record has none; `value_bytes` is its size either way (-1 for a null value)."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    value_bytes: int
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str | None:
        """The first header of that name as text (bytes that are not UTF-8 escaped)."""
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "backslashreplace")
        return None

    @property
    def code(self) -> str:
        return self.header("error.code") or "?"

    @property
    def source_topic(self) -> str | None:
        return self.header("source.topic")

    @property
    def source_partition(self) -> int | None:
        return _integer(self.header("source.partition"))

    @property
    def source_offset(self) -> int | None:
        return _integer(self.header("source.offset"))

    @property
    def truncated(self) -> list[str]:
        """The parts `dead_letter` cut (`value`, `key`, `headers`): gone from this copy."""
        text = self.header("original.truncated")
        return [part for part in text.split(",") if part] if text else []

    def original_headers(self) -> list[tuple[str, bytes]]:
        return replayable(self.headers)


def _integer(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _text(text: str, max_bytes: int) -> bytes:
    # Messages can quote what they refuse (lone surrogates, NUL): always valid UTF-8 out, and
    # bytes a header name carried that were not UTF-8 (surrogate escapes) shown as `\xff`.
    escaped = text.encode("utf-8", "surrogateescape") if _escapes_bytes(text) else None
    if escaped is not None:
        text = escaped.decode("utf-8", "backslashreplace")
    return text.encode("utf-8", "backslashreplace")[:max_bytes].decode("utf-8", "ignore").encode()


def _escapes_bytes(text: str) -> bool:
    """Whether `text` holds bytes decoded with `surrogateescape` (and nothing else unencodable)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        return False
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True
