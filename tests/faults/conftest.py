"""Fixtures of the fault tests: a private PostgreSQL and Kafka (see private_stack.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.settings import Settings
from tests.faults.private_stack import PrivateStack, start_private_stack


@pytest.fixture(scope="session")
def private_stack(base_settings: Settings) -> Iterator[PrivateStack]:
    stack = start_private_stack(base_settings)
    yield stack
    stack.stop()
