"""Whatever a Kafka record holds, the ledger names what it is: a command, or a DLQ reason.

`decode` is the ledger's door for bytes from outside: any key, value and headers give a
`Decoded` command or a `Poison` whose DLQ record and reply can be sent. The DLQ record of
anything stays far below the broker's size limit. Record batches that aiokafka cannot parse
(header names that are not UTF-8) are read back by services/ledger/unreadable.py as written.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.dlq import (
    HEADER_OVERHEAD_BYTES,
    MAX_HEADERS_BYTES,
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    DlqCode,
    dead_letter,
)
from services.ledger.batches import BatchApplier
from services.ledger.command_spans import CommandSpans
from services.ledger.records import CommandRecord, Decoded, Poison, decode, reply_topic
from services.ledger.unreadable import parse_batches
from tests.raw_records import RawName, record_batch

GOOD = {"type": "consume", "command_id": "c-1", "account_id": "acct-1", "action": "chat"}
# Own headers of a DLQ record: codes, message (≤ 1000 bytes), source, sizes, truncation.
OWN_HEADERS_BYTES = 2 * 1024
DLQ_RECORD_LIMIT = MAX_VALUE_BYTES + MAX_KEY_BYTES + MAX_HEADERS_BYTES + OWN_HEADERS_BYTES


def any_text(max_size: int = 20) -> st.SearchStrategy[str]:
    return st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=max_size)


def values() -> st.SearchStrategy[bytes | None]:
    good = json.dumps(GOOD).encode()
    deep = b'{"type": "consume", "metadata": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    return st.one_of(
        st.none(),
        st.binary(max_size=64),
        st.just(good),
        st.just(deep),
        st.just(b"[" * 100_000),
        st.builds(lambda text: text.encode("utf-8", "surrogatepass"), any_text()),
        st.builds(
            lambda field, text: json.dumps({**GOOD, field: text}, ensure_ascii=False).encode(
                "utf-8", "surrogatepass"
            ),
            st.sampled_from(sorted(GOOD)),
            any_text(),
        ),
    )


def headers() -> st.SearchStrategy[tuple[tuple[str, bytes | None], ...]]:
    names = st.one_of(
        st.sampled_from(["correlation_id", "reply_to", "content-type", ""]),
        any_text(),
        st.builds(lambda raw: raw.decode("utf-8", "surrogateescape"), st.binary(max_size=8)),
    )
    return st.lists(st.tuples(names, st.one_of(st.none(), st.binary(max_size=32))), max_size=6).map(
        tuple
    )


@st.composite
def records(draw: Any) -> CommandRecord:
    return CommandRecord(
        topic="credits.commands",
        partition=draw(st.integers(0, 3)),
        offset=draw(st.integers(0, 2**40)),
        key=draw(st.one_of(st.none(), st.just(b"acct-1"), st.binary(max_size=16))),
        value=draw(values()),
        headers=draw(headers()),
    )


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=records())
def test_any_record_is_a_command_or_a_poison_that_can_be_sent(record: CommandRecord) -> None:
    outcome = decode(record)
    if isinstance(outcome, Decoded):
        assert record.key == outcome.command.account_id.encode()
        assert record.header_names_are_utf8()
        return
    assert isinstance(outcome, Poison) and outcome.dlq_code in DlqCode
    if outcome.reply is not None:
        outcome.reply.model_dump_json().encode("utf-8")  # a reply always serialises
    letter = dead_letter(
        code=outcome.dlq_code,
        message=outcome.message,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=record.headers,
    )
    for name, _ in letter.headers:
        name.encode("utf-8")  # what the producer does with a header name
    reply_topic(record, "credits.replies").encode("ascii")


@pytest.mark.parametrize(
    ("value", "key", "code"),
    [
        (None, b"acct-1", DlqCode.INVALID_JSON),
        (b"", b"acct-1", DlqCode.INVALID_JSON),
        (b"\xff\xfe", b"acct-1", DlqCode.UNDECODABLE),
        (b"[" * 100_000, b"acct-1", DlqCode.OVERSIZED),
        (b'{"a":' * 2000 + b"1" + b"}" * 2000, b"acct-1", DlqCode.INVALID_JSON),
        (json.dumps({**GOOD, "command_id": "a\x00b"}).encode(), b"acct-1", DlqCode.INVALID_COMMAND),
        (json.dumps(GOOD).encode(), None, DlqCode.WRONG_KEY),
        (json.dumps(GOOD).encode(), b"acct-2", DlqCode.WRONG_KEY),
    ],
)
def test_each_kind_of_bad_record_has_its_code(
    value: bytes | None, key: bytes | None, code: DlqCode
) -> None:
    record = CommandRecord("t", 0, 0, key, value, (("correlation_id", b"x"),))
    outcome = decode(record)
    assert isinstance(outcome, Poison) and outcome.dlq_code == code
    assert outcome.reply is not None and outcome.reply.status == "rejected"


def test_a_header_name_that_is_not_utf8_sends_the_record_to_the_dlq() -> None:
    name = b"\xff\xfe-id".decode("utf-8", "surrogateescape")
    record = CommandRecord("t", 0, 0, b"acct-1", json.dumps(GOOD).encode(), ((name, b"v"),))
    outcome = decode(record)
    assert isinstance(outcome, Poison) and outcome.dlq_code == DlqCode.UNDECODABLE
    letter = dead_letter(
        code=outcome.dlq_code,
        message=outcome.message,
        topic="t",
        partition=0,
        offset=0,
        key=record.key,
        value=record.value,
        headers=record.headers,
    )
    assert ("\\xff\\xfe-id", b"v") in letter.headers


@settings(max_examples=60, deadline=None)
@given(
    key=st.one_of(st.none(), st.binary(max_size=8), st.just(b"k" * (MAX_KEY_BYTES + 1))),
    value_size=st.sampled_from([0, 10, MAX_VALUE_BYTES, MAX_VALUE_BYTES + 1, 1024 * 1024]),
    header_count=st.sampled_from([0, 3, 20_000]),
    header_size=st.sampled_from([0, 1, 1000]),
)
def test_a_dead_letter_never_exceeds_its_bound(
    key: bytes | None, value_size: int, header_count: int, header_size: int
) -> None:
    """Whatever the original (up to the broker's 1 MiB and beyond), the DLQ copy fits."""
    value = b"v" * value_size
    original = [("" if header_size == 0 else "h", b"x" * header_size)] * header_count
    letter = dead_letter(
        code=DlqCode.OVERSIZED,
        message="m" * 5000,
        topic="t" * 249,
        partition=0,
        offset=2**62,
        key=key,
        value=value,
        headers=original,
    )
    size = len(letter.key or b"") + len(letter.value or b"")
    size += sum(len(n.encode()) + len(v) + HEADER_OVERHEAD_BYTES for n, v in letter.headers)
    assert size <= DLQ_RECORD_LIMIT < 1024 * 1024
    if value_size > MAX_VALUE_BYTES:
        assert dict(letter.headers)["original.size"] == str(value_size).encode()


@pytest.mark.parametrize("compression_type", [0, 1])  # none, gzip
def test_record_batches_are_read_back_as_written(compression_type: int) -> None:
    bad_name = RawName(b"\xff\xfename")
    first: list[Any] = [(b"k0", b"v0", [("correlation_id", b"c0")]), (None, None, [("n", None)])]
    second: list[Any] = [
        (b"k2", b"v2", []),
        (b"k3", b"v3", [(bad_name, b"x"), ("reply_to", b"r")]),
        (b"k4", b"v4", []),
    ]
    data = record_batch(10, first, compression_type=compression_type)
    data += record_batch(12, second, compression_type=compression_type)
    data += record_batch(15, [(b"k5", b"v5", [])])[:-3]  # a fetch may cut the last batch

    batches = parse_batches("t", 2, data)

    assert [(b.base_offset, b.last_offset) for b in batches] == [(10, 11), (12, 14)]
    assert not batches[0].aiokafka_cannot_parse() and batches[1].aiokafka_cannot_parse()
    records = [r for b in batches for r in b.records]
    assert [(r.partition, r.offset, r.key, r.value) for r in records] == [
        (2, 10, b"k0", b"v0"),
        (2, 11, None, None),
        (2, 12, b"k2", b"v2"),
        (2, 13, b"k3", b"v3"),
        (2, 14, b"k4", b"v4"),
    ]
    assert records[0].headers == (("correlation_id", b"c0"),)
    assert records[1].headers == (("n", None),)
    assert records[3].headers[0][0].encode("utf-8", "surrogateescape") == b"\xff\xfename"
    assert records[3].header("reply_to") == b"r"


def test_a_batch_that_cannot_be_parsed_gives_a_placeholder_per_offset() -> None:
    data = bytearray(record_batch(7, [(b"k", b"v", []), (b"k", b"w", [])]))
    data[-5:] = b"\x7f" * 5  # the last record's lengths now run past its end
    (batch,) = parse_batches("t", 0, bytes(data))
    assert [r.offset for r in batch.records] == [7, 8]
    assert all(r.unreadable and isinstance(decode(r), Poison) for r in batch.records)
    assert batch.aiokafka_cannot_parse()


# Far below the producer's 1 MiB per record, whatever the command record held.
MAX_REPLY_BYTES = 64 * 1024


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key_size=st.sampled_from([0, 10, 600_000]),
    correlation_size=st.sampled_from([0, 36, 1024, 1025, 500_000]),
    value=st.sampled_from(
        [
            json.dumps({**GOOD, "account_id": "a b"}).encode(),  # refused: has a command id
            json.dumps({**GOOD, "type": "x" * 15_000}).encode(),  # quoted in the refusal
            b"\xff",
        ]
    ),
)
def test_a_reply_is_small_whatever_the_record_it_answers(
    key_size: int, correlation_size: int, value: bytes
) -> None:
    """A reply carries the sender's correlation id and the account id as key: a record with a
    huge key or header must not make a reply Kafka would refuse (the ledger would retry it)."""
    correlation_id = b"c" * correlation_size
    headers = (("correlation_id", correlation_id),) if correlation_size else ()
    record = CommandRecord("t", 0, 7, b"k" * key_size, value, headers)
    poison = decode(record)
    assert isinstance(poison, Poison)
    if poison.reply is None:
        return  # nothing to match it by (no command id, no correlation id): no reply
    applier: Any = BatchApplier.__new__(BatchApplier)
    applier.consumer_group, applier.default_reply_topic = "g", "credits.replies"

    (reply,) = BatchApplier._stored_replies(applier, [], [], [], [poison], CommandSpans([]))

    size = len(reply.key or b"") + len(reply.value) + len(reply.correlation_id or b"")
    assert size <= MAX_REPLY_BYTES
    assert reply.correlation_id == (correlation_id if 0 < correlation_size <= 1024 else None)
