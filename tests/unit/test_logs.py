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
    faststream = logging.getLogger("faststream")
    saved = (root.handlers[:], root.level, faststream.handlers[:], faststream.propagate)
    try:
        yield
    finally:
        root.handlers[:], level, faststream.handlers[:], faststream.propagate = saved
        root.setLevel(level)
        structlog.reset_defaults()


@pytest.mark.usefixtures("restored_logging")
def test_faststream_lines_come_out_as_json_like_ours(capsys: pytest.CaptureFixture[str]) -> None:
    import faststream.kafka  # noqa: F401  (it installs its own handler on import)

    configure_logging("INFO", "json")
    logging.getLogger("faststream.ledger").info("Consumer assigned to partitions: %s", "(0, 1)")
    structlog.get_logger("credits.ledger").info("consuming", topic="credits.commands")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == [
        "Consumer assigned to partitions: (0, 1)",
        "consuming",
    ]
    assert {line["level"] for line in lines} == {"info"}


@pytest.mark.usefixtures("restored_logging")
def test_a_client_library_repeating_itself_is_heard_once_and_ours_every_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    for attempt in range(100):  # a broker away: aiokafka logs each reconnect attempt
        logging.getLogger("aiokafka").error("Unable connect to node with id %s: %s", 1, attempt)
        logging.getLogger("aiokafka.producer.sender").warning("Got error produce response")
    for attempt in range(3):
        structlog.get_logger("credits.relay").warning("relaying", attempt=attempt)

    events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert events == [
        "Unable connect to node with id 1: 0",
        "Got error produce response",
        "relaying",
        "relaying",
        "relaying",
    ]
