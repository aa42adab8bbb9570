"""Which partition of `credits.commands` an account's commands go to.

Order per account holds only if every producer maps an account id to the same partition
(DESIGN §2.1). aiokafka's `DefaultPartitioner` is the Java client's keyed rule:
`toPositive(murmur2(key)) % partitions` on the UTF-8 key bytes; tests/client proves it against
the kafka-clients jar. librdkafka-based producers must set `partitioner=murmur2_random` to agree
(their default, `consistent_random`, is CRC32 and sends accounts elsewhere): docs/CLIENT.md.
"""

from __future__ import annotations

from infra.kafka_clients import MURMUR2_PARTITIONER

# Passed explicitly to the producer, so a changed library default cannot move accounts silently.
PARTITIONER = MURMUR2_PARTITIONER


def account_key(account_id: str) -> bytes:
    return account_id.encode("utf-8")


def partition_for(account_id: str, partitions: int) -> int:
    """The partition the client's producer picks for this account among `partitions`."""
    assert partitions >= 1
    every = list(range(partitions))
    partition: int = PARTITIONER(account_key(account_id), every, every)
    return partition
