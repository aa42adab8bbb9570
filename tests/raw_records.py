"""Kafka records as a C or Go producer may write them: header names that are not UTF-8.

aiokafka's own producer encodes header names as UTF-8; its pure-Python record builder calls
`name.encode("utf-8")`, so a `str` whose `encode` returns other bytes writes those bytes as
they are, which is what librdkafka or franz-go do with a name they are given as bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import aiokafka.producer.message_accumulator as accumulator
import aiokafka.producer.producer as producer_module
from aiokafka.record import default_records

PythonBuilder: Any = default_records._DefaultRecordBatchBuilderPy


class RawName(str):
    """A header name written as the given bytes (which need not be UTF-8)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawName:
        name = super().__new__(cls, raw.decode("latin-1"))
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


@contextmanager
def raw_header_names() -> Iterator[None]:
    """aiokafka producers started meanwhile write `RawName` header names as their bytes."""
    saved = (accumulator.DefaultRecordBatchBuilder, producer_module.DefaultRecordBatchBuilder)
    accumulator.DefaultRecordBatchBuilder = PythonBuilder
    producer_module.DefaultRecordBatchBuilder = PythonBuilder
    try:
        yield
    finally:
        accumulator.DefaultRecordBatchBuilder, producer_module.DefaultRecordBatchBuilder = saved


def record_batch(
    base_offset: int,
    records: Sequence[tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]],
    *,
    compression_type: int = 0,
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
        builder.append(delta, timestamp=None, key=key, value=value, headers=headers)
    data = bytearray(builder.build())
    data[0:8] = base_offset.to_bytes(8, "big", signed=True)
    return bytes(data)
