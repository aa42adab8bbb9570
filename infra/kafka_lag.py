"""Consumer lag per partition (`credits_consumer_lag_records`): the high watermark of each
partition, as the last fetch saw it, minus where the consumer stands in it.

The consumer tells where it stands (`advance`) as it takes records, and `report`s after each
poll: a dictionary lookup per partition, no request to the broker.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.metrics import CONSUMER_LAG


class ConsumerLag:
    def __init__(self, group: str) -> None:
        self.group = group
        # partition -> the offset after the last record taken (the consumer's position).
        self._positions: dict[TopicPartition, int] = {}

    def advance(self, partition: TopicPartition, next_offset: int) -> None:
        self._positions[partition] = next_offset

    def report(self, consumer: AIOKafkaConsumer) -> None:
        # A partition taken away since the poll (a rebalance, a broker gone) has no high watermark
        # here any more: aiokafka asserts on asking, and a metric must never stop a component.
        assigned = consumer.assignment()
        self.forget([partition for partition in self._positions if partition not in assigned])
        for partition, position in self._positions.items():
            high = consumer.highwater(partition)
            if high is not None:
                CONSUMER_LAG.labels(self.group, partition.topic, str(partition.partition)).set(
                    max(high - position, 0)
                )

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions this consumer no longer reads (a rebalance): their lag is another's."""
        for partition in partitions:
            self._positions.pop(partition, None)
            with suppress(KeyError):  # never reported
                CONSUMER_LAG.remove(self.group, partition.topic, str(partition.partition))
