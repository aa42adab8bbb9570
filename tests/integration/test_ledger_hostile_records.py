"""Hostile records interleaved with good commands, through the real Kafka and PostgreSQL.

Hypothesis draws records as an attacker or a broken producer would send them: random bytes,
bytes that are not UTF-8, no value, JSON nested past Python's recursion limit, values up to
the broker's size limit, wrong content types, NUL characters and lone surrogates in every
field, keys that are not the account id (or none), null and binary header values, header names
that are not UTF-8, `reply_to` topics that do not exist. Every good command must be applied
exactly once and answered, every bad record must be in the DLQ with a reason, and the ledger
must never stop or fail a batch.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from domain.account import Account
from infra.dlq import DlqCode
from infra.event_store.env import event_store_env
from infra.kafka_clients import MURMUR2_PARTITIONER, acknowledged_producer
from infra.kafka_clients import consumer as kafka_consumer
from infra.kafka_topics import delete_topics
from infra.ledger_application import LedgerApplication
from infra.settings import Settings, Topic
from services.ledger.replies import FALLBACK_HEADER
from tests.ledger_harness import RunningLedger, own_topics
from tests.raw_records import RawName, produce_raw

pytestmark = pytest.mark.integration

# Under the broker's default limit for one record batch (1 MiB and a few bytes).
HUGE_VALUE_BYTES = 1_000_000
READ_TIMEOUT_SECONDS = 60.0
Headers = list[tuple[str, bytes | None]]


@dataclass
class Plan:
    """One example: records to send in order; which are good commands and which are bad."""

    sends: list[tuple[bytes | None, bytes | None, Headers, str]] = field(default_factory=list)
    # command id -> account of every good command
    good: dict[str, str] = field(default_factory=dict)
    consumes: Counter[str] = field(default_factory=Counter)
    missing_reply_to: set[str] = field(default_factory=set)


def _command(account: str, type: str, **fields: Any) -> dict[str, Any]:
    return {"type": type, "command_id": uuid.uuid4().hex, "account_id": account, **fields}


ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12)
NASTY_TEXT = st.one_of(
    ANY_TEXT.map(lambda text: text + "\x00"),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", "\udc80\x00"]),
)
HEADER_VALUES = st.one_of(st.none(), st.binary(max_size=16), st.just(b"\xff\x00\xfe"))
CONTENT_TYPES = st.sampled_from(
    [b"text/plain", b"application/cloudevents+json", b"application/xml", b"\xff\xfe", b""]
)


@st.composite
def bad_record(draw: Any, kind: str, account: str) -> tuple[bytes | None, bytes | None, Headers]:
    """A record the ledger must dead-letter, of one `kind`."""
    good = _command(account, "consume", action="lookup")
    headers: Headers = [("correlation_id", draw(HEADER_VALUES))]
    key: bytes | None = account.encode()
    if kind == "random_bytes":
        value: bytes | None = b"\x00" + draw(st.binary(max_size=200))  # never valid JSON
    elif kind == "not_utf8":
        value = b"\xff" + draw(st.binary(max_size=50))
    elif kind == "no_value":
        value = draw(st.sampled_from([None, b""]))
    elif kind == "deep":
        depth = draw(st.integers(1100, 5000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        value = opener * depth + b"1" * (opener != b"[") + closer * depth
    elif kind == "huge":
        value = b'{"type":"consume","pad":"' + b"x" * HUGE_VALUE_BYTES + b'"}'
    elif kind == "nasty_text":
        name = draw(st.sampled_from(["command_id", "account_id", "action", "type", "resource"]))
        text = draw(NASTY_TEXT)
        as_bytes = draw(st.booleans())  # raw (surrogatepass) bytes, or JSON escapes
        document = json.dumps({**good, name: text}, ensure_ascii=not as_bytes)
        value = document.encode("utf-8", "surrogatepass")
    elif kind == "wrong_key":
        value = json.dumps(good).encode()
        key = draw(st.one_of(st.none(), st.binary(max_size=10), st.just(b"acct\x00")))
        if key == account.encode():
            key = None
    elif kind == "huge_key_and_headers":
        value = json.dumps({**good, "account_id": "a b"}).encode()  # refused, and answered
        key = b"k" * draw(st.integers(1, 200_000))
        headers = [("correlation_id", b"c" * 400_000), ("reply_to", b"r" * 300_000)]
    elif kind == "header_name_not_utf8":
        value = json.dumps(good).encode()
        headers.append((RawName(b"\xff" + draw(st.binary(max_size=6))), draw(HEADER_VALUES)))
    else:
        raise AssertionError(kind)
    if draw(st.booleans()):
        headers.append(("content-type", draw(CONTENT_TYPES)))
    if draw(st.booleans()):
        headers.append(("reply_to", draw(st.one_of(st.none(), st.binary(max_size=20)))))
    if draw(st.booleans()):
        headers.append((draw(ANY_TEXT.filter(_utf8)), draw(HEADER_VALUES)))
    return key, value, headers


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


BAD_KINDS = [
    "random_bytes",
    "not_utf8",
    "no_value",
    "deep",
    "huge",
    "nasty_text",
    "wrong_key",
    "huge_key_and_headers",
    "header_name_not_utf8",
]


@st.composite
def plans(draw: Any, missing_topic: str, prefix: str) -> Plan:
    run = uuid.uuid4().hex[:6]
    accounts = [f"{prefix}{run}-{n}" for n in range(draw(st.integers(6, 12)))]
    # Each account's good commands, in the order they must apply.
    queues: dict[str, list[dict[str, Any]]] = {}
    for account in accounts:
        consumes = draw(st.integers(1, 4))
        queues[account] = [_command(account, "open_account", plan="pro")] + [
            _command(account, "consume", action="lookup") for _ in range(consumes)
        ]
    # One bad record of every kind, and more drawn at random.
    kinds = BAD_KINDS + draw(st.lists(st.sampled_from(BAD_KINDS), max_size=20))
    kinds = [k for k in kinds if k != "huge"] + ["huge"] * (1 + kinds.count("huge") // 4)
    bad = [draw(bad_record(kind, draw(st.sampled_from(accounts)))) for kind in kinds]
    # Interleaved: every account's commands keep their order.
    slots = [a for a, queue in queues.items() for _ in queue] + ["bad"] * len(bad)
    slots = draw(st.permutations(slots))
    plan = Plan()
    for slot in slots:
        if slot == "bad":
            plan.sends.append((*bad.pop(), "bad"))
            continue
        body = queues[slot].pop(0)
        headers: Headers = [("correlation_id", body["command_id"].encode())]
        if draw(st.booleans()):
            headers.append(("content-type", draw(CONTENT_TYPES)))  # not read: a good command
        if draw(st.integers(0, 9)) == 0:
            headers.append(("reply_to", missing_topic.encode()))
            plan.missing_reply_to.add(body["command_id"])
        if draw(st.booleans()):
            headers.append(("x-extra", draw(HEADER_VALUES)))
        plan.sends.append((slot.encode(), json.dumps(body).encode(), headers, body["command_id"]))
        plan.good[body["command_id"]] = slot
        plan.consumes[slot] += body["type"] == "consume"
    return plan


@pytest.fixture(scope="module")
async def hostile_topics(settings: Settings, pg_database: str) -> AsyncIterator[Settings]:
    own = await own_topics(settings)
    yield own
    await delete_topics(own, own.all_topics())


@pytest.fixture(scope="module")
async def ledger(hostile_topics: Settings) -> AsyncIterator[RunningLedger]:
    running = RunningLedger(hostile_topics, as_in_production=True)
    await running.start()
    yield running
    await running.close()


TOTALS: Counter[str] = Counter()


@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.generate],  # shrinking would replay through Kafka for minutes
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(data=st.data())
async def test_every_good_command_applies_once_and_every_bad_record_is_dead_lettered(
    hostile_topics: Settings, ledger: RunningLedger, data: st.DataObject
) -> None:
    topics = hostile_topics
    missing_topic = f"{topics.topic_prefix}no-such-reply-topic"
    plan = data.draw(plans(missing_topic, "hostile-"))
    commands_topic = topics.topic(Topic.COMMANDS)

    bad_positions: set[tuple[int, int]] = set()
    producer = acknowledged_producer(topics, "credits-tests", max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(commands_topic))
        for key, value, headers, label in plan.sends:
            if any(isinstance(name, RawName) for name, _ in headers):
                partition = MURMUR2_PARTITIONER(key, partitions, partitions)
                offset = await produce_raw(
                    producer, commands_topic, partition, [(key, value, headers)]
                )
            else:
                sent = await producer.send_and_wait(
                    commands_topic, value=value, key=key, headers=headers
                )
                partition, offset = sent.partition, sent.offset
            if label == "bad":
                bad_positions.add((partition, offset))
    finally:
        await producer.stop()

    replies = await _read_until(topics, topics.topic(Topic.REPLIES), set(plan.good), _by_id)
    dead = await _read_until(topics, topics.topic(Topic.DLQ), bad_positions, _by_source)

    for command_id in plan.good:
        answers = replies[command_id]
        assert {json.loads(r["value"])["status"] for r in answers} == {"accepted"}, answers
        if command_id in plan.missing_reply_to:
            assert all(
                r["headers"].get(FALLBACK_HEADER, b"").startswith(b"unknown_topic") for r in answers
            )
    for account, consumes in plan.consumes.items():
        events = _stored_events(topics, account)
        assert sum(isinstance(e, Account.Opened) for e in events) == 1
        assert sum(isinstance(e, Account.Consumed) for e in events) == consumes
    codes: Counter[str] = Counter()
    for position in bad_positions:
        (letter,) = dead[position]
        assert letter["headers"]["error.code"].decode() in set(DlqCode)
        assert letter["headers"]["error.message"]
        codes[letter["headers"]["error.code"].decode()] += 1
    state = ledger.consumer.state
    assert state.unexpected_failures == 0
    assert state.ready, state.reason
    assert state.unreadable_batches >= 1

    TOTALS.update(
        {"examples": 1, "good": len(plan.good), "bad": len(bad_positions)}
        | {f"dlq {code}": n for code, n in codes.items()}
        | {"reply_to fallbacks": len(plan.missing_reply_to)}
    )
    print(
        "hostile records so far:",
        ", ".join(f"{k}={v}" for k, v in sorted(TOTALS.items())),
        f"; unreadable batches read by the ledger: {state.unreadable_batches}",
    )


async def test_a_record_batch_aiokafka_cannot_parse_loses_none_of_its_records(
    hostile_topics: Settings, ledger: RunningLedger
) -> None:
    """Good commands before and after a header name that is not UTF-8, in one record batch,
    and records of other partitions polled with it: all applied, the bad record dead-lettered."""
    topics = hostile_topics
    commands_topic = topics.topic(Topic.COMMANDS)
    run = uuid.uuid4().hex[:6]
    producer = acknowledged_producer(topics, "credits-tests")
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(commands_topic))
        by_partition: dict[int, str] = {}
        for n in range(200):
            account = f"batch-{run}-{n}"
            by_partition.setdefault(
                MURMUR2_PARTITIONER(account.encode(), partitions, partitions), account
            )
        accounts = [by_partition[p] for p in partitions]
        bodies = [_command(a, "open_account", plan="pro") for a in accounts]
        for body in bodies[1:]:
            await producer.send_and_wait(
                commands_topic,
                value=json.dumps(body).encode(),
                key=body["account_id"].encode(),
                headers=[("correlation_id", body["command_id"].encode())],
            )
        first = bodies[0]
        spends = [_command(first["account_id"], "consume", action="lookup") for _ in range(2)]
        raw_batch: list[Any] = []
        for good in [first, spends[0], None, spends[1]]:
            if good is None:  # between good commands of the same batch
                bad_headers = [(RawName(b"\xfe\xff"), b"v"), ("correlation_id", b"bad")]
                raw_batch.append((first["account_id"].encode(), b"{}", bad_headers))
                continue
            headers = [("correlation_id", good["command_id"].encode())]
            raw_batch.append((good["account_id"].encode(), json.dumps(good).encode(), headers))
        base = await produce_raw(producer, commands_topic, partitions[0], raw_batch)
    finally:
        await producer.stop()

    expected = {b["command_id"] for b in [*bodies, *spends]}
    replies = await _read_until(topics, topics.topic(Topic.REPLIES), expected, _by_id)
    dead = await _read_until(
        topics, topics.topic(Topic.DLQ), {(partitions[0], base + 2)}, _by_source
    )

    assert all(json.loads(replies[c][0]["value"])["status"] == "accepted" for c in expected)
    assert dead[(partitions[0], base + 2)][0]["headers"]["error.code"] == b"undecodable"
    events = _stored_events(topics, first["account_id"])
    assert sum(isinstance(e, Account.Consumed) for e in events) == 2


def _by_id(record: Any) -> Any:
    return dict(record.headers).get("correlation_id", b"").decode("utf-8", "replace")


def _by_source(record: Any) -> Any:
    headers = dict(record.headers)
    return int(headers["source.partition"]), int(headers["source.offset"])


async def _read_until(
    topics: Settings, topic: str, expected: set[Any], key_of: Any
) -> dict[Any, list[dict[str, Any]]]:
    """Every record of `topic` from the start, grouped by `key_of`, until all `expected` came."""
    consumer = kafka_consumer(topics, client_id="credits-tests", group_id=None)
    await consumer.start()
    seen: dict[Any, list[dict[str, Any]]] = {}
    try:
        partitions = [TopicPartition(topic, p) for p in range(topics.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = asyncio.get_running_loop().time() + READ_TIMEOUT_SECONDS
        while not expected <= set(seen):
            missing = sorted(expected - set(seen))
            assert asyncio.get_running_loop().time() < deadline, f"never came: {missing}"
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    entry = {"value": record.value, "headers": dict(record.headers)}
                    seen.setdefault(key_of(record), []).append(entry)
    finally:
        await consumer.stop()
    return seen


def _stored_events(settings: Settings, account_id: str) -> list[Any]:
    reader = LedgerApplication(env={**event_store_env(settings), "AGGREGATE_CACHE_MAXSIZE": "0"})
    try:
        return list(reader.events.get(account_id))
    finally:
        reader.close()
