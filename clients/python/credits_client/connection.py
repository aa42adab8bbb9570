"""How any process of ours reaches Kafka: the connection settings, read from the environment
(`CREDITS_KAFKA_*`, `CREDITS_TOPIC_*`), the topic names, and the aiokafka keyword arguments
they give (addresses, timeouts and, where the deployment sets them, SASL and TLS).

The client's own so that it installs alone; the service's settings (`infra/settings.py`) extend
`KafkaSettings` and its client factories (`infra/kafka_clients.py`) reuse these, so a producer
service and the ledger connect the same way from the same variables.
"""

from __future__ import annotations

import logging
import ssl
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Topic(StrEnum):
    """The Kafka topics (DESIGN §2.1, and the payment side's replies), before the prefix."""

    COMMANDS = "credits.commands"
    REPLIES = "credits.replies"
    EVENTS = "credits.events"
    DLQ = "credits.dlq"
    STRIPE_EVENTS = "stripe.events"
    # The ledger's replies to the payment consumer's commands (their `reply_to`).
    PAYMENTS_REPLIES = "credits.payments.replies"


class KafkaSettings(BaseSettings):
    """What a client needs to reach the brokers; the service's `Settings` adds the rest."""

    # Inputs are left out of validation errors: they may hold a password.
    model_config = SettingsConfigDict(
        env_prefix="CREDITS_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # Comma-separated host:port list.
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Prepended to every topic name, e.g. "staging." gives "staging.credits.commands".
    topic_prefix: str = ""
    # One replica on the local single node; production sets 3.
    topic_replication_factor: int = Field(default=1, ge=1, le=5)
    kafka_request_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Kafka security, for every producer, consumer and admin client (`connection_options`).
    # Who may publish commands is the broker's ACLs' to decide (README, "Kafka security").
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = Field(default="", max_length=256)
    # SecretStr: shown as '**********' in reprs, logs and dumps.
    kafka_sasl_password: SecretStr = Field(default=SecretStr(""), max_length=1024)
    # PEM files (empty: none). The CAs the brokers' certificates are checked against (empty:
    # the system's), and this client's certificate and key where brokers ask for one (mTLS;
    # the key may sit in the certificate's file).
    kafka_ssl_ca_file: str = ""
    kafka_ssl_cert_file: str = ""
    kafka_ssl_key_file: str = ""
    kafka_ssl_key_password: SecretStr = Field(default=SecretStr(""), max_length=1024)
    kafka_ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Self:
        """Refuse a half-configured security setup at start, naming the variable."""
        sasl = self.kafka_security_protocol.startswith("SASL_")
        tls = self.kafka_security_protocol.endswith("SSL")
        password = self.kafka_sasl_password.get_secret_value()
        if sasl and not (self.kafka_sasl_username and password):
            raise ValueError(
                f"CREDITS_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "CREDITS_KAFKA_SASL_USERNAME and CREDITS_KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.kafka_sasl_username or password):
            raise ValueError(
                "CREDITS_KAFKA_SASL_USERNAME/PASSWORD are set but "
                f"CREDITS_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} does not use SASL"
            )
        files = {
            "CREDITS_KAFKA_SSL_CA_FILE": self.kafka_ssl_ca_file,
            "CREDITS_KAFKA_SSL_CERT_FILE": self.kafka_ssl_cert_file,
            "CREDITS_KAFKA_SSL_KEY_FILE": self.kafka_ssl_key_file,
        }
        for variable, path in files.items():
            if path and not tls:
                raise ValueError(
                    f"{variable} is set but "
                    f"CREDITS_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} has no TLS"
                )
            if path and not Path(path).is_file():
                raise ValueError(f"{variable}: no such file {path}")
        if self.kafka_ssl_key_file and not self.kafka_ssl_cert_file:
            raise ValueError("CREDITS_KAFKA_SSL_KEY_FILE needs CREDITS_KAFKA_SSL_CERT_FILE")
        return self

    def topic(self, topic: Topic) -> str:
        return f"{self.topic_prefix}{topic.value}"

    def kafka_bootstrap_servers(self) -> list[tuple[str, int]]:
        servers: list[tuple[str, int]] = []
        for item in self.kafka_bootstrap.split(","):
            host, _, port = item.strip().rpartition(":")
            servers.append((host, int(port)))
        return servers


class _HidesSaslSecrets(logging.Filter):
    """aiokafka's DEBUG lines show each request sent, SASL ones included: PLAIN's carry the
    password in clear (`sasl_auth_bytes=b'user\\x00user\\x00password'`). Those lines are
    dropped; the others stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        return not any("sasl_auth_bytes" in repr(arg) for arg in args)


# Every module that makes a Kafka client imports this one first.
logging.getLogger("aiokafka.conn").addFilter(_HidesSaslSecrets())


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """What every client needs to reach the brokers (aiokafka keyword arguments): the
    addresses, timeouts, and the security settings (SASL, TLS). Holds the SASL password in
    clear: pass it to a client, never log it."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "request_timeout_ms": int(settings.kafka_request_timeout_seconds * 1000),
        "security_protocol": protocol,
    }
    tls = tls_context(settings)
    if tls is not None:
        options["ssl_context"] = tls
    if protocol.startswith("SASL_"):
        # aiokafka takes the SCRAM credentials in the same two arguments as PLAIN's.
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def tls_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL connections (None for the others): the brokers'
    certificates checked against the CA file (or the system's CAs), hostnames checked unless
    turned off, this client's certificate where one is configured."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_file or None)
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_cert_file:
        context.load_cert_chain(
            settings.kafka_ssl_cert_file,
            settings.kafka_ssl_key_file or None,
            password=settings.kafka_ssl_key_password.get_secret_value() or None,
        )
    return context
