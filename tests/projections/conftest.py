"""Fixtures for the read-side integration tests: the ledger on this session's PostgreSQL
database, driven with a settable clock, and the read side (pool, event log, projections)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from domain.catalog import Catalog, load_catalog
from infra.settings import Settings
from projections.read_side import ReadSide, open_read_side
from tests.kit.ledger import Ledger, ledger_on_postgres
from tests.projections.raw_side import Side, own_side


@pytest.fixture(scope="session")
def demo_catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.catalog_path)


@pytest.fixture(scope="session")
def pg_ledger(settings: Settings, pg_database: str, demo_catalog: Catalog) -> Iterator[Ledger]:
    ledger = ledger_on_postgres(settings, demo_catalog)
    yield ledger
    ledger.close()


@pytest.fixture(scope="session")
async def read_side(
    settings: Settings, pg_database: str, pg_ledger: Ledger
) -> AsyncIterator[ReadSide]:
    async with open_read_side(settings) as side:
        yield side


@pytest.fixture
async def side(base_settings: Settings, settings: Settings) -> AsyncIterator[Side]:
    """A read side over raw stored events, on a database of the test's own."""
    async with own_side(base_settings, settings) as own:
        yield own
