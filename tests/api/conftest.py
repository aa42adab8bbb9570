"""The API tests use the read-side fixtures of tests/projections."""

from tests.projections.conftest import demo_catalog, pg_ledger, read_side

__all__ = ["demo_catalog", "pg_ledger", "read_side"]
