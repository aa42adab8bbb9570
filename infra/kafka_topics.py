"""Creates the public topics (DESIGN §2.1) with a fixed partition count."""

from __future__ import annotations

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from infra.kafka_clients import kafka_admin
from infra.settings import Settings


async def create_topics(settings: Settings, names: list[str] | None = None) -> dict[str, str]:
    """Creates each topic that does not exist yet; returns name -> "created" | "exists"."""
    names = names if names is not None else settings.all_topics()
    async with kafka_admin(settings) as admin:
        existing = set(await admin.list_topics())
        outcome = {name: "exists" for name in names if name in existing}
        missing = [name for name in names if name not in existing]
        if not missing:
            return outcome
        new_topics = [
            NewTopic(
                name=name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
            )
            for name in missing
        ]
        try:
            await admin.create_topics(new_topics, validate_only=False)
            outcome.update({name: "created" for name in missing})
        except TopicAlreadyExistsError:
            # Another process created them between list and create: that is the goal anyway.
            outcome.update({name: "exists" for name in missing})
        return outcome


async def delete_topics(settings: Settings, names: list[str]) -> None:
    async with kafka_admin(settings) as admin:
        await admin.delete_topics(names)


async def partition_counts(settings: Settings, names: list[str]) -> dict[str, int]:
    async with kafka_admin(settings) as admin:
        described = await admin.describe_topics(names)
        return {t["topic"]: len(t["partitions"]) for t in described}
