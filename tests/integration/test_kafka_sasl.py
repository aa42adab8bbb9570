"""Kafka with SASL/PLAIN, against a real broker's SASL listener (`deploy/local/kafka.sh`,
CREDITS_KAFKA_SASL_PORT; a broker of these tests' own, see tests/sasl_broker.py): every client
the factories make logs in with the settings' credentials; wrong ones fail at start with an
error that says so, and the password shows nowhere."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr

from infra.kafka_clients import acknowledged_producer, admin_client, consumer
from infra.kafka_probe import broker_answers
from infra.settings import Settings
from tests.sasl_broker import USERNAME, SaslBroker, start_sasl_broker, stop_sasl_broker

pytestmark = pytest.mark.integration

RECORDS = 20


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[SaslBroker]:
    broker = start_sasl_broker()
    try:
        yield broker
    finally:
        stop_sasl_broker(broker)


async def _round_trip(settings: Settings, topic: str) -> list[bytes]:
    admin = admin_client(settings)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, 1, 1)])
        assert [error[1] for error in response.topic_errors] == [0]
    finally:
        await admin.close()
    producer = acknowledged_producer(settings, "credits-sasl-test")
    await producer.start()
    try:
        for n in range(RECORDS):
            await producer.send_and_wait(topic, f"record {n}".encode(), key=b"k")
    finally:
        await producer.stop()
    reader = consumer(settings, client_id="credits-sasl-test", group_id=None)
    await reader.start()
    try:
        partition = TopicPartition(topic, 0)
        reader.assign([partition])
        await reader.seek_to_beginning(partition)
        received: list[bytes] = []
        for _ in range(50):  # bounded: each poll waits at most a second
            batch = await reader.getmany(partition, timeout_ms=1000)
            received += [record.value for record in batch.get(partition, [])]
            if len(received) >= RECORDS:
                break
    finally:
        await reader.stop()
    return received


async def test_producers_consumers_and_admin_log_in_with_the_settings_credentials(
    sasl_broker: SaslBroker, base_settings: Settings
) -> None:
    settings = sasl_broker.sasl_settings(base_settings)
    received = await _round_trip(settings, f"sasl-{uuid.uuid4().hex[:10]}")
    assert received == [f"record {n}".encode() for n in range(RECORDS)]
    # The PLAINTEXT listener of the same broker keeps serving everything else.
    plain = sasl_broker.plaintext_settings(base_settings)
    assert len(await _round_trip(plain, f"plain-{uuid.uuid4().hex[:10]}")) == RECORDS
    # A SASL listener answers the health probe before any login.
    assert broker_answers("127.0.0.1", sasl_broker.sasl_port)


@pytest.mark.parametrize(
    ("username", "password", "mechanism", "says"),
    [
        (USERNAME, "wrong-password", "PLAIN", "Invalid username or password"),
        ("nobody", "wrong-password", "PLAIN", "Invalid username or password"),
        (USERNAME, None, "SCRAM-SHA-512", "UnsupportedSaslMechanism"),
    ],
)
async def test_wrong_credentials_fail_at_start_saying_why_and_never_show_the_password(
    sasl_broker: SaslBroker,
    base_settings: Settings,
    caplog: pytest.LogCaptureFixture,
    username: str,
    password: str | None,
    mechanism: str,
    says: str,
) -> None:
    secret = password or sasl_broker.password
    settings = sasl_broker.sasl_settings(
        base_settings,
        kafka_sasl_username=username,
        kafka_sasl_password=SecretStr(secret),
        kafka_sasl_mechanism=mechanism,
    )
    caplog.set_level(logging.DEBUG)
    for client in (
        acknowledged_producer(settings, "credits-sasl-test"),
        consumer(settings, client_id="credits-sasl-test", group_id=None),
        admin_client(settings),
    ):
        with pytest.raises(KafkaConnectionError) as refused:
            await client.start()
        message = str(refused.value)
        assert says in message and f"user {username!r} ({mechanism})" in message, message
        assert secret not in message
        stop = getattr(client, "close", None) or client.stop
        await stop()
    assert secret not in caplog.text
    assert secret not in repr(settings) and secret not in settings.model_dump_json()
