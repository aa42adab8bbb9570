"""Event values made storable in PostgreSQL before any read model sees them.

The event store keeps JSON, which can carry what the read models' columns cannot: NUL (text
cannot hold it), lone surrogates (not UTF-8), text of any length (a key column's index entry
must stay under ~2,700 bytes), timestamps whose UTC form is past Python's year 1..9999. Commands
are validated against all of these, but events already stored, and any a future bug lets
through, must still never stop a read model: every decoded event passes through
`storable_event` first, so every projection, and the rows it keeps in memory and reloads, sees
the same storable values.

- Text that is storable as it is and short enough stays as it is (every value a command can
  carry today). Other text becomes its escaped form (NUL as `\\u0000`, a lone surrogate as
  `\\udXXX`), cut to fit, followed by `#` and the first 32 hex digits of the SHA-256 of the
  original: distinct inputs stay distinct keys (only a value that already ends in such a
  digest could collide), and the same input always gives the same text.
- Aware timestamps are turned to UTC; one past the range Python can express in UTC becomes
  `datetime.min`/`datetime.max` (UTC), which asyncpg stores as -infinity/infinity.
- Integers are left exact: the read models store them as `numeric` (see tables.py).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

# Identifiers, names, days, kinds: they end up in key columns, four of which share one index
# entry. Commands allow at most 128 ASCII characters for any of them.
KEY_TEXT_BYTES = 512
# Free text (a Stripe payment id, a grant's reference, a reason): at most 256 characters in a
# command, so up to 1,024 bytes of UTF-8. Never a key column.
FREE_TEXT_BYTES = 1024
FREE_TEXT_FIELDS = frozenset({"payment_reference", "reference", "reason", "recovery_url"})
# Error messages stored beside a skipped event.
MESSAGE_BYTES = 2000

_DIGEST_HEX = 32
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# In an event's JSON: a run of bytes long enough to be a text past the key bound, and a time
# with a UTC offset other than +00:00 (`"...T09:00:00+05:30"`).
_LONG_RUN = re.compile(rb'[^"]{%d,}' % KEY_TEXT_BYTES)
_OTHER_OFFSET = re.compile(rb'[+-](?!00:00")\d\d:\d\d(?::\d\d(?:\.\d+)?)?"')
_MIN = datetime.min.replace(tzinfo=UTC)
_MAX = datetime.max.replace(tzinfo=UTC)


def storable_text(value: str, max_bytes: int = KEY_TEXT_BYTES) -> str:
    """`value` if PostgreSQL can store it in `max_bytes` of UTF-8, else its escaped, digested
    form (at most `max_bytes`). Idempotent: a storable result maps to itself."""
    assert max_bytes > _DIGEST_HEX + 1
    if value.isascii():
        if len(value) <= max_bytes and "\x00" not in value:
            return value
    elif _UNSTORABLE.search(value) is None and len(value.encode()) <= max_bytes:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_HEX]
    escaped = _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    room = max_bytes - _DIGEST_HEX - 1
    prefix = escaped.encode()[:room].decode(errors="ignore")
    return f"{prefix}#{digest}"


def storable_time(value: datetime) -> datetime:
    """In UTC; past what Python can express in UTC: the end of its range (stored ±infinity)."""
    if value.tzinfo is None or value.tzinfo is UTC:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return _MAX if value.year > 1 else _MIN


def plainly_storable(state: bytes) -> bool:
    """Whether every text and time an event's stored JSON holds is storable as it is.

    So `storable_event` need not walk it (a fifth of a rebuild's time): ASCII with no escape at
    all (so no NUL, no surrogate), no run of bytes as long as the key bound (so no text longer
    than either bound), and no time with an offset other than UTC. Conservative: False only
    means the event is walked.
    """
    return (
        state.isascii()
        and b"\\" not in state
        and _LONG_RUN.search(state) is None
        and _OTHER_OFFSET.search(state) is None
    )


def storable_event(event: Any, state: bytes | None = None) -> Any:
    """The event with every text and time in it storable; changed in place (a fresh decode).

    `state`: the stored JSON it was decoded from, when known, to skip the walk where
    `plainly_storable` says it would change nothing. The stream's id is not in that JSON (it
    comes from its own column): it is made storable either way.
    """
    fields = vars(event)
    if state is not None and plainly_storable(state):
        originator_id = fields.get("originator_id")
        if type(originator_id) is str:
            fields["originator_id"] = storable_text(originator_id)
        return event
    for name, value in fields.items():
        max_bytes = FREE_TEXT_BYTES if name in FREE_TEXT_FIELDS else KEY_TEXT_BYTES
        stored = _storable(value, max_bytes)
        if stored is not value:
            fields[name] = stored
    return event


def _storable(value: Any, max_bytes: int) -> Any:
    kind = type(value)
    if kind is str:
        return storable_text(value, max_bytes)
    if kind is int or value is None or kind is bool:
        return value
    if isinstance(value, datetime):
        return storable_time(value)
    if kind is list:
        return [_storable(item, max_bytes) for item in value]
    if kind is dict:
        return {
            storable_text(key, KEY_TEXT_BYTES) if type(key) is str else key: _storable(
                item, FREE_TEXT_BYTES if key in FREE_TEXT_FIELDS else KEY_TEXT_BYTES
            )
            for key, item in value.items()
        }
    return value
