"""Consumer lag is a metric: it must never stop the consumer that reports it."""

from __future__ import annotations

from aiokafka import TopicPartition

from infra.kafka_lag import ConsumerLag
from infra.metrics import REGISTRY


class _Consumer:
    """aiokafka's answers after a rebalance took partition 1 away: asking its high watermark
    asserts."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def highwater(self, partition: TopicPartition) -> int:
        assert partition in self.assigned, "Partition is not assigned"
        return 10


def test_a_partition_taken_away_since_the_poll_is_forgotten_not_asked_about() -> None:
    kept, lost = TopicPartition("lag-test", 0), TopicPartition("lag-test", 1)
    lag = ConsumerLag("lag-group")
    lag.advance(kept, 4)
    lag.advance(lost, 7)
    lag.report(_Consumer({kept}))
    value = REGISTRY.get_sample_value(
        "credits_consumer_lag_records",
        {"group": "lag-group", "topic": "lag-test", "partition": "0"},
    )
    assert value == 6
    lag.report(_Consumer(set()))  # everything taken away (Kafka gone, a rebalance)
    assert (
        REGISTRY.get_sample_value(
            "credits_consumer_lag_records",
            {"group": "lag-group", "topic": "lag-test", "partition": "0"},
        )
        is None
    )
