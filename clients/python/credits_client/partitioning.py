"""Which partition of `credits.commands` an account's commands go to.

Order per account holds only if every producer maps an account id to the same partition
(DESIGN §2.1). aiokafka's `DefaultPartitioner` is the Java client's keyed rule:
`toPositive(murmur2(key)) % partitions` on the UTF-8 key bytes; tests/client proves it against
the kafka-clients jar. librdkafka-based producers must set `partitioner=murmur2_random` to agree
(their default, `consistent_random`, is CRC32 and sends accounts elsewhere): docs/CLIENT.md.
"""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

# Passed explicitly to every producer (`kafka_clients`), so a changed library default cannot
# move accounts silently.
MURMUR2_PARTITIONER = DefaultPartitioner()


def account_key(account_id: str) -> bytes:
    return account_id.encode("utf-8")


def partition_for(account_id: str, partitions: int) -> int:
    """The partition the client's producer picks for this account among `partitions`."""
    assert partitions >= 1
    every = list(range(partitions))
    partition: int = MURMUR2_PARTITIONER(account_key(account_id), every, every)
    return partition
