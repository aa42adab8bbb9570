"""Kafka records as a C or Go producer may write them: header names that are not UTF-8.

aiokafka's own producer encodes header names as UTF-8, and librdkafka or franz-go write a name
they are given as bytes as it is. Here a record batch is built with aiokafka's pure-Python
builder, which calls `name.encode("utf-8")` (a `RawName` answers with its own bytes), and
handed to the broker with a ProduceRequest of its own: no producer of the process is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import NoError, for_code
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record import default_records

PythonBuilder: Any = default_records._DefaultRecordBatchBuilderPy
Record = tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]


class RawName(str):
    """A header name written as the given bytes (which need not be UTF-8)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawName:
        name = super().__new__(cls, raw.decode("latin-1"))
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


def record_batch(
    base_offset: int, records: Sequence[Record], *, compression_type: int = 0
) -> bytes:
    """One v2 record batch as a broker stores it (offsets from `base_offset`)."""
    builder = PythonBuilder(
        magic=2,
        compression_type=compression_type,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=16 * 1024 * 1024,
    )
    for delta, (key, value, headers) in enumerate(records):
        builder.append(delta, timestamp=None, key=key, value=value, headers=list(headers))
    data = bytearray(builder.build())
    data[0:8] = base_offset.to_bytes(8, "big", signed=True)
    return bytes(data)


async def produce_raw(
    producer: AIOKafkaProducer, topic: str, partition: int, records: Sequence[Record]
) -> int:
    """Appends one record batch of `records` to the partition; returns its first offset.

    Through a started producer's connections (for their addresses and any authentication),
    not through the producer itself, which would encode the header names.
    """
    await producer.partitions_for(topic)
    client = producer.client
    node_id = client.cluster.leader_for_partition(TopicPartition(topic, partition))
    request = ProduceRequest(None, -1, 30_000, [(topic, [(partition, record_batch(0, records))])])
    response = await client.send(node_id, request)
    for _, partitions in response.topics:
        for answer in partitions:
            error_type = for_code(answer[1])
            if error_type is not NoError:
                raise error_type()
            return int(answer[2])
    raise AssertionError("the broker did not answer for the partition")
