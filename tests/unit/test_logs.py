"""Every log line is one structured record, library lines included."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from infra.logs import configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        yield
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        structlog.reset_defaults()


@pytest.mark.usefixtures("restored_logging")
def test_library_lines_come_out_as_json_like_ours(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("aiokafka.consumer.group_coordinator").warning(
        "Heartbeat failed for group %s because it is rebalancing", "credits-ledger"
    )
    structlog.get_logger("credits.ledger").info("consuming", topic="credits.commands")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == [
        "Heartbeat failed for group credits-ledger because it is rebalancing",
        "consuming",
    ]
    assert [line["level"] for line in lines] == ["warning", "info"]


@pytest.mark.usefixtures("restored_logging")
def test_a_library_repeating_itself_is_written_once_per_minute(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    client = logging.getLogger("aiokafka.client")
    for attempt in range(300):  # a broker away for 30 s: ten attempts a second
        client.error("Unable connect to node with id %s: attempt %s", 1, attempt)
    logging.getLogger("aiokafka.consumer.fetcher").error("Failed fetch messages from %s", 1)
    for _ in range(3):
        structlog.get_logger("credits.ledger").warning("not ready", reason="Kafka")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == [
        "Unable connect to node with id 1: attempt 0",
        "Failed fetch messages from 1",
        "not ready",
        "not ready",
        "not ready",
    ]
