"""Every log line is one structured record, library lines included."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from pydantic import SecretStr

from infra.logs import BatchedLines, configure_logging
from infra.metrics import REGISTRY
from infra.settings import Settings


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
        structlog.contextvars.clear_contextvars()


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


@pytest.mark.usefixtures("restored_logging")
def test_no_line_carries_a_secret_of_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="ledger",
        kafka_sasl_password=SecretStr("sasl-password-5f1c2e"),
        stripe_api_key="sk_test_51Hlogsecret",
        stripe_webhook_secrets="whsec_old_one_123,whsec_new_one_456",
        portal_token_secrets="portal-secret-9a8b7c",
    )
    configure_logging("INFO", "json", secrets=settings.secret_values(), component="payments")
    # Wherever a secret may turn up: a library's message, a field, an exception's text.
    logging.getLogger("aiokafka.conn").error(
        "SASL authentication failed for %s with sasl-password-5f1c2e", "ledger"
    )
    log = structlog.get_logger("credits.payments")
    log.warning("stripe refused", key="sk_test_51Hlogsecret", secrets=["whsec_new_one_456"])
    try:
        raise ValueError("portal-secret-9a8b7c does not sign whsec_old_one_123")
    except ValueError:
        log.exception("failed")

    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert len(lines) == 3
    for secret in settings.secret_values():
        assert secret not in err
    assert all(line["component"] == "payments" for line in lines)
    assert "[redacted]" in lines[0]["event"] and lines[1]["key"] == "[redacted]"


@pytest.mark.usefixtures("restored_logging")
def test_short_values_are_not_blanked_out(capsys: pytest.CaptureFixture[str]) -> None:
    # The local database password is "credits": blanking it would blank every logger name.
    configure_logging("INFO", "json", secrets=["credits"])
    structlog.get_logger("credits.ledger").info("credits consuming")
    assert json.loads(capsys.readouterr().err)["event"] == "credits consuming"


@pytest.mark.usefixtures("restored_logging")
def test_a_closed_log_stream_drops_the_ledgers_lines_and_never_fails_its_batch() -> None:
    configure_logging("INFO", "json")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    closed = io.StringIO()
    closed.close()
    handler.setStream(closed)
    before = REGISTRY.get_sample_value("credits_log_lines_dropped_total") or 0.0

    BatchedLines("credits.ledger.commands").info("command", [{"type": "consume"}] * 3)

    assert REGISTRY.get_sample_value("credits_log_lines_dropped_total") == before + 3
