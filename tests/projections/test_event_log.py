"""The event log's fast decoding gives exactly the events the ledger's mapper gives."""

from __future__ import annotations

import pytest

from projections.read_side import ReadSide
from tests.kit.ledger import Ledger
from tests.projections.test_projector import populate

pytestmark = pytest.mark.integration


async def test_fast_decoding_equals_the_mapper_on_every_stored_event(
    read_side: ReadSide, pg_ledger: Ledger
) -> None:
    account = populate(pg_ledger, accounts=2, consumes=10)[0]
    pg_ledger.ok("reserve", account, hold_id="h", action="generate", ttl_seconds=60)
    pg_ledger.ok("capture", account, hold_id="h", amount=1)
    pg_ledger.ok("consume", account, action="lookup", metadata={"note": '{"_type_": "x"}'})
    async with read_side.pool.acquire() as conn:
        rows = await read_side.log.fetch(conn, 0, 100_000)
    decoded = read_side.log.decode(rows)
    assert len(decoded) == len(rows) > 20
    for row, item in zip(rows, decoded, strict=True):
        assert item.event == read_side.log.decode_with_mapper(row)
        assert vars(item.event) == vars(read_side.log.decode_with_mapper(row))
