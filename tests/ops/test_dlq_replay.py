"""`credits dlq list|show|replay` on the real Kafka and PostgreSQL.

The fixable refusal (docs/OPERATIONS.md): a ledger release with a defect fails on one kind of
command, which the ledger isolates and dead-letters as `unprocessable` (its sender is told
`rejected`), the rest of the batch applied. Once the fixed release runs, the operator replays
the record: it is applied, once; replayed again, it answers `duplicate` and nothing moves.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import TopicPartition
from credits_client import CreditsClient

from domain.account import Account
from infra.dlq import MAX_VALUE_BYTES, DlqCode, dead_letter
from infra.kafka_clients import acknowledged_producer, stop_producer
from infra.kafka_clients import consumer as kafka_consumer
from infra.settings import Settings, Topic
from services.cli import dlq_topic
from services.cli.main import main
from tests.kafka_client import KafkaTestClient, Received
from tests.ledger_harness import RunningLedger

pytestmark = pytest.mark.integration

CALL_TIMEOUT_SECONDS = 15.0
GRANTED = 500
# On the test client's reply topic: the opening, the refusal, the first replay, the second.
REPLIES = 4
# On the commands topic: the opening, the grant, its two replays.
COMMANDS_SENT = 4


@pytest.fixture
def cli(
    topics: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    logging_restored: None,
) -> Callable[..., Any]:
    """`credits WORDS` on this test's topics and database: (exit code, standard output)."""
    monkeypatch.setenv("CREDITS_TOPIC_PREFIX", topics.topic_prefix)
    monkeypatch.setenv("CREDITS_PG_DATABASE", topics.pg_database)

    async def run(*words: str) -> tuple[int, str]:
        code = await asyncio.to_thread(main, list(words))
        return code, capsys.readouterr().out

    return run


@pytest.fixture
async def client(topics: Settings) -> AsyncIterator[CreditsClient]:
    client = CreditsClient(
        topics,
        client_id=f"ops-{uuid.uuid4().hex[:8]}",
        timeout_seconds=CALL_TIMEOUT_SECONDS,
        delete_reply_topic_on_stop=True,
    )
    await client.start()
    yield client
    await client.stop()


def _with_defect(ledger: RunningLedger) -> None:
    """The defective release: any batch holding a promotional grant fails."""
    handle_many = ledger.service.handle_many

    def defective(commands: Any, **kwargs: Any) -> Any:
        if any(getattr(c, "source", None) == "promotional" for c in commands):
            raise RuntimeError("defect: promotional grants crash this release")
        return handle_many(commands, **kwargs)

    ledger.service.handle_many = defective  # type: ignore[method-assign]


async def _read(settings: Settings, topic: str, count: int) -> list[Received]:
    kafka = KafkaTestClient(settings)
    await kafka.start()
    try:
        return await kafka.read(topic, count, timeout_seconds=CALL_TIMEOUT_SECONDS)
    finally:
        await kafka.stop()


async def _statuses(settings: Settings, topic: str, command_id: str) -> list[str]:
    """The statuses of the replies to `command_id` on a reply topic holding `REPLIES` records."""
    records = await _read(settings, topic, REPLIES)
    replies = [json.loads(r.value or b"{}") for r in sorted(records, key=lambda r: r.offset)]
    return [reply["status"] for reply in replies if reply.get("command_id") == command_id]


async def _record_count(settings: Settings, topic: str) -> int:
    reader = kafka_consumer(settings, client_id="ops-test", group_id=None)
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = await reader.end_offsets(partitions)
        firsts = await reader.beginning_offsets(partitions)
    finally:
        await reader.stop()
    return sum(ends[tp] - firsts[tp] for tp in partitions)


async def test_a_command_dead_lettered_by_a_defect_is_replayed_and_applied_once(
    topics: Settings, client: CreditsClient, cli: Any
) -> None:
    account = f"dlq-{uuid.uuid4().hex[:10]}"
    grant: dict[str, Any] = {
        "type": "grant",
        "command_id": f"grant-{uuid.uuid4().hex[:8]}",
        "account_id": account,
        "credit_type": "credits",
        "amount": GRANTED,
        "source": "promotional",
    }
    defective = RunningLedger(topics)
    _with_defect(defective)
    await defective.start()
    try:
        opened = await client.send(
            {"type": "open_account", "command_id": "open", "account_id": account, "plan": "free"}
        )
        refused = await client.send(grant)
    finally:
        await defective.close()
    assert opened.status == "accepted"
    assert (refused.status, refused.error and refused.error.code) == ("rejected", "invalid_command")
    before = opened.balances["credits"].available

    code, listed = await cli("dlq", "list", "--code", "unprocessable", "--key", account)
    scan = await dlq_topic.scan(topics, 100, lambda r: r.key == account.encode(), with_values=True)
    records = scan.records
    assert code == 0 and len(records) == 1
    record = records[0]
    position = f"{record.partition}:{record.offset}"
    commands_topic = topics.topic(Topic.COMMANDS)
    assert record.code == DlqCode.UNPROCESSABLE
    assert record.source_topic == commands_topic
    assert position in listed and "unprocessable" in listed and account in listed
    assert "1 record(s)" in listed

    code, shown = await cli("dlq", "show", position)
    assert code == 0
    assert "error.code: unprocessable" in shown and "replayable yes" in shown
    assert grant["command_id"] in shown and "reply_to: " in shown

    fixed = RunningLedger(topics)
    await fixed.start()
    try:
        sent_before = await _record_count(topics, commands_topic)
        code, dry = await cli("dlq", "replay", position, "--dry-run")
        assert (code, "would replay 1 record(s); 0 not" in dry) == (0, True)
        assert await _record_count(topics, commands_topic) == sent_before
        code, first = await cli("dlq", "replay", position)
        assert code == 0 and f"replayed {position} (unprocessable) to {commands_topic}" in first
        code, second = await cli("dlq", "replay", "--code", "unprocessable", "--key", account)
        assert code == 0 and "replayed 1 record(s); 0 not" in second

        statuses = await _statuses(topics, client.reply_topic, grant["command_id"])
        sent = await _read(topics, commands_topic, COMMANDS_SENT)
        account_now: Account = await asyncio.to_thread(fixed.app.repository.get, account)
        grants = [
            e
            for e in await asyncio.to_thread(lambda: list(fixed.app.events.get(account)))
            if isinstance(e, Account.Granted) and e.source == "promotional"
        ]
    finally:
        await fixed.close()
    # Refused by the defect, applied by the first replay, a duplicate at the second.
    assert statuses == ["rejected", "accepted", "duplicate"]
    assert account_now.available("credits") == before + GRANTED
    assert len(grants) == 1
    # The replays carry the original's key, value and headers, none of the DLQ's own.
    original, *replays = [r for r in sent if grant["command_id"].encode() in (r.value or b"")]
    assert (original.partition, original.offset) == (record.source_partition, record.source_offset)
    assert len(replays) == 2
    for replay in replays:
        assert (replay.key, replay.value, replay.headers) == (
            original.key,
            original.value,
            original.headers,
        )
        assert replay.partition == original.partition
    assert not any(name.startswith(("error.", "source.")) for name, _ in original.headers)


async def test_a_truncated_record_is_not_replayed(topics: Settings, cli: Any) -> None:
    commands_topic = topics.topic(Topic.COMMANDS)
    huge = b"\xff" * (MAX_VALUE_BYTES + 1)
    letter = dead_letter(
        code=DlqCode.OVERSIZED,
        message="too large",
        topic=commands_topic,
        partition=0,
        offset=7,
        key=b"acct-huge",
        value=huge,
        headers=[("reply_to", b"somewhere")],
    )
    producer = acknowledged_producer(topics, "ops-test", max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            topics.topic(Topic.DLQ), letter.value, key=letter.key, headers=letter.headers
        )
    finally:
        await stop_producer(producer, within_seconds=10)
    position = f"{sent.partition}:{sent.offset}"

    code, shown = await cli("dlq", "show", position)
    assert code == 0
    assert "replayable no: the DLQ kept only part of the original (value)" in shown
    assert f"hex:{'ff' * 16}" in shown  # not UTF-8: shown as hex
    code, out = await cli("dlq", "replay", position)
    assert code == 1
    assert f"not replayed {position}: the DLQ kept only part" in out
    assert "replayed 0 record(s); 1 not" in out
    code, out = await cli("dlq", "replay", "9:999999")
    assert code == 1 and "not found 9:999999" in out
