"""Record batches aiokafka cannot parse, read by the ledger itself so that no record stalls it.

aiokafka decodes header names as UTF-8 while it parses a fetched record batch. Kafka's protocol
says they are UTF-8, and Java clients always send them so, but a C or Go producer can send any
bytes, and the broker stores them as they are. Such a record makes `getmany` raise
`UnicodeDecodeError` on every poll (measured with aiokafka 0.14):
- the partition's position stays before the record batch that holds it, so the partition
  stalls for good, and no record of that batch (before or after the bad one) is ever returned;
- records of other partitions drained in the same poll are lost with the exception: their
  positions have already moved past them.
The consumer therefore puts every partition back where its last returned record left it, reads
the partition's next record batches here with a FetchRequest of its own, parses them leniently
(header names that are not UTF-8 kept with their bytes escaped as surrogates), and seeks past
them. `services/ledger/records.decode` sends such a record to the DLQ (`undecodable`); the other
records of its batch are commands like any others. A batch this parser cannot read either (a
codec missing here) yields one placeholder record per offset, which the DLQ takes with the
reason, the original staying in the source topic.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.errors import KafkaConnectionError, NoError, for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.util import decode_varint

from services.ledger.records import CommandRecord

# A fetch returns at least one whole record batch even if larger; the broker's default limit
# for one is 1 MiB, so two hold it and what follows.
FETCH_MAX_BYTES = 2 * 1024 * 1024
# Record batch v2 header: base offset (8), length (4), leader epoch (4), magic (1), crc (4),
# attributes (2), last offset delta (4), first and max timestamps (16), producer id (8),
# producer epoch (2), base sequence (4), record count (4).
_HEADER = struct.Struct(">qiibIhiqqqhii")
_CODECS: dict[int, Callable[[bytes], bytes]] = {
    1: gzip_decode,
    2: snappy_decode,
    3: lz4_decode,
    4: zstd_decode,
}
_CONTROL_BATCH = 0x20


@dataclass(frozen=True)
class RawBatch:
    base_offset: int
    last_offset: int
    records: list[CommandRecord]

    def aiokafka_cannot_parse(self) -> bool:
        return any(r.unreadable is not None or not r.header_names_are_utf8() for r in self.records)


async def read_batches(client: AIOKafkaClient, tp: TopicPartition, offset: int) -> list[RawBatch]:
    """The record batches of `tp` from `offset` on, as far as one fetch goes."""
    node_id = client.cluster.leader_for_partition(tp)
    if node_id is None or node_id < 0:
        raise KafkaConnectionError(f"no leader known for {tp}")
    request = FetchRequest(
        0,  # max wait: answer with what is there
        1,
        FETCH_MAX_BYTES,
        0,  # read uncommitted, as the consumer
        [(tp.topic, [(tp.partition, offset, FETCH_MAX_BYTES)])],
    )
    response = await client.send(node_id, request)
    for topic, partitions in response.topics:
        for partition, error_code, _highwater, *part_data in partitions:
            if (topic, partition) != (tp.topic, tp.partition):
                continue
            error_type = for_code(error_code)
            if error_type is not NoError:
                raise error_type()
            return parse_batches(tp.topic, partition, bytes(part_data[-1] or b""))
    return []


def parse_batches(topic: str, partition: int, data: bytes) -> list[RawBatch]:
    """The v2 record batches in `data`, up to the first partial or older-format one."""
    batches: list[RawBatch] = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        (base_offset, length, _epoch, magic, _crc, attributes, last_delta, *_rest) = (
            _HEADER.unpack_from(data, pos)
        )
        end = pos + 12 + length
        if magic != 2 or end > len(data) or length < _HEADER.size - 12:
            break  # an older format (aiokafka reads it: no header names) or cut by the fetch
        last_offset = base_offset + last_delta
        if not attributes & _CONTROL_BATCH:
            body = data[pos + _HEADER.size : end]
            count = _HEADER.unpack_from(data, pos)[-1]
            try:
                records = _records(topic, partition, base_offset, attributes, count, body)
            except Exception as error:
                reason = f"the record batch could not be read: {type(error).__name__}: {error}"
                records = [
                    CommandRecord(topic, partition, offset, None, None, (), unreadable=reason)
                    for offset in range(base_offset, last_offset + 1)
                ]
            batches.append(RawBatch(base_offset, last_offset, records))
        else:
            batches.append(RawBatch(base_offset, last_offset, []))
        pos = end
    return batches


def _records(
    topic: str, partition: int, base_offset: int, attributes: int, count: int, body: bytes
) -> list[CommandRecord]:
    codec = attributes & 0x07
    if codec:
        body = _CODECS[codec](body)
    buffer = bytearray(body)
    pos = 0
    records: list[CommandRecord] = []
    for _ in range(count):
        length, pos = decode_varint(buffer, pos)
        end = pos + length
        pos += 1  # attributes
        _timestamp_delta, pos = decode_varint(buffer, pos)
        offset_delta, pos = decode_varint(buffer, pos)
        key, pos = _bytes(buffer, pos)
        value, pos = _bytes(buffer, pos)
        header_count, pos = decode_varint(buffer, pos)
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(header_count):
            name, pos = _bytes(buffer, pos)
            header_value, pos = _bytes(buffer, pos)
            # Any bytes: those that are not UTF-8 kept as surrogate escapes, for the DLQ to show.
            headers.append(((name or b"").decode("utf-8", "surrogateescape"), header_value))
        if pos != end:
            raise ValueError(f"record at offset delta {offset_delta} has {end - pos} bytes left")
        records.append(
            CommandRecord(topic, partition, base_offset + offset_delta, key, value, tuple(headers))
        )
    return records


def _bytes(buffer: bytearray, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint(buffer, pos)
    if length < 0:
        return None, pos
    if pos + length > len(buffer):
        raise ValueError("a length runs past the end of the record batch")
    return bytes(buffer[pos : pos + length]), pos + length
