"""Fixtures of the fault tests: a private PostgreSQL and Kafka (see private_stack.py), and a
report of what the tests measured (seconds to recover, stop times), printed after the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.settings import Settings
from tests.faults.private_stack import PrivateStack, start_private_stack

# Lines the fault tests measured, printed in the terminal summary (not only on failure).
MEASURED: list[str] = []


@pytest.fixture(scope="session")
def private_stack(base_settings: Settings) -> Iterator[PrivateStack]:
    stack = start_private_stack(base_settings)
    yield stack
    stack.stop()


@pytest.fixture
def fault_report() -> list[str]:
    return MEASURED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fault tests run last: they take minutes, and tests whose inputs carry a time (signed
    webhooks, five minutes' tolerance) must not wait behind them."""
    items.sort(key=lambda item: item.get_closest_marker("faults") is not None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASURED:
        terminalreporter.section("fault tests: measured")
        for line in MEASURED:
            terminalreporter.write_line(line)
