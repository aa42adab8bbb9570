"""The client's reply topic: created when missing, its partitions looked up, deleted on request.

A per-client topic has one partition: one reader, and replies need no order among accounts.
Its retention is short because a reply older than any call's timeout has no reader left.
"""

from __future__ import annotations

import asyncio

from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from credits_client.connection import KafkaSettings
from credits_client.kafka_clients import kafka_admin

REPLY_TOPIC_PARTITIONS = 1
# A new topic's leader is elected within milliseconds here; poll its metadata this often.
METADATA_POLL_SECONDS = 0.1


async def ensure_reply_topic(settings: KafkaSettings, name: str, retention_seconds: int) -> None:
    async with kafka_admin(settings) as admin:
        response = await admin.create_topics(
            [
                NewTopic(
                    name=name,
                    num_partitions=REPLY_TOPIC_PARTITIONS,
                    replication_factor=settings.topic_replication_factor,
                    topic_configs={"retention.ms": str(retention_seconds * 1000)},
                )
            ]
        )
    # aiokafka returns per-topic error codes instead of raising them.
    for topic_error in response.topic_errors:
        code = topic_error[1]
        if code not in (0, TopicAlreadyExistsError.errno):
            raise KafkaError(f"creating reply topic {name}: error code {code} {topic_error[2:]}")


async def wait_for_partitions(settings: KafkaSettings, name: str) -> int:
    """The topic's partition count, once every partition has a leader. Callers bound the wait."""
    async with kafka_admin(settings) as admin:
        while True:
            try:
                (described,) = await admin.describe_topics([name])
            except KafkaError:
                described = None
            if (
                described is not None
                and described["error_code"] == 0
                and described["partitions"]
                and all(p["leader"] >= 0 for p in described["partitions"])
            ):
                return len(described["partitions"])
            await asyncio.sleep(METADATA_POLL_SECONDS)


async def delete_reply_topic(settings: KafkaSettings, name: str) -> None:
    async with kafka_admin(settings) as admin:
        await admin.delete_topics([name])
