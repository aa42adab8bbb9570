"""Settings from environment variables (12-factor), each with a default that works locally.

Every variable is listed in the README's settings table; `make run` and `make test` use the
defaults, which point at the local stack that `deploy/local/postgres.sh` and
`deploy/local/kafka.sh` start.
"""

from __future__ import annotations

import re
import socket
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parent.parent


class Topic(StrEnum):
    """The Kafka topics (DESIGN §2.1, and the payment side's replies), before the prefix."""

    COMMANDS = "credits.commands"
    REPLIES = "credits.replies"
    EVENTS = "credits.events"
    DLQ = "credits.dlq"
    STRIPE_EVENTS = "stripe.events"
    # The ledger's replies to the payment consumer's commands (their `reply_to`).
    PAYMENTS_REPLIES = "credits.payments.replies"


class Settings(BaseSettings):
    # Inputs are left out of validation errors: they may hold a password.
    model_config = SettingsConfigDict(
        env_prefix="CREDITS_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # PostgreSQL: the event store and the read models.
    pg_host: str = "127.0.0.1"
    pg_port: int = Field(default=55432, ge=1, le=65535)
    pg_user: str = "credits"
    pg_password: str = "credits"
    pg_database: str = "credits"
    # Two cores: a handful of connections saturates them; more only queue inside PostgreSQL.
    pg_pool_size: int = Field(default=8, ge=1, le=64)
    pg_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    # Kafka: comma-separated host:port list.
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Prepended to every topic name, e.g. "staging." gives "staging.credits.commands".
    topic_prefix: str = ""
    # Fixed at creation: the key (account id) decides the partition, so changing it later would
    # reorder accounts. Four suits two cores; more partitions only add consumer overhead here.
    topic_partitions: int = Field(default=4, ge=1, le=256)
    # One replica on the local single node; production sets 3.
    topic_replication_factor: int = Field(default=1, ge=1, le=5)
    kafka_request_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Kafka security, for every producer, consumer and admin client (infra/kafka_clients.py).
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
    # The ledger's static membership of its consumer group (`group.instance.id`): a ledger that
    # restarts under the same id takes its partitions back at once. Unique per running ledger
    # (two with one id fence each other); the host name suits one ledger per host or pod.
    # Empty: dynamic membership (a restart waits for the old session to expire, ~10 s).
    ledger_instance_id: str = Field(default_factory=socket.gethostname, max_length=249)

    # HTTP API.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    # `/metrics` and `/readyz`: a port of their own, which the deployment exposes to whom it
    # chooses (docs/API.md).
    ops_host: str = "127.0.0.1"
    ops_port: int = Field(default=8081, ge=1, le=65535)
    # Names this API instance's reply topic (`credits.replies.api-<id>`): keep it stable across
    # restarts (a pod or host name) so a restart reuses the topic.
    api_instance_id: str = Field(
        default_factory=lambda: _host_name(), pattern=r"^[A-Za-z0-9._-]{1,64}$"
    )
    # How long `POST /v1/accounts/{id}/commands` waits for the ledger's reply (then 504).
    api_command_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Portal tokens: HMAC-SHA256 secrets, comma-separated; the first signs, every one verifies
    # (old and new during a rotation). Empty: a random secret per process (tokens then work
    # only on the instance that issued them, until it restarts).
    portal_token_secrets: str = ""
    # Who may embed the Plan & Usage page (`/`) in an iframe: the CSP `frame-ancestors` sources,
    # space-separated (`'self' https://app.example.com`); `'none'` forbids every frame.
    portal_frame_ancestors: str = Field(
        default="'self'", min_length=1, max_length=2048, pattern=r"^[A-Za-z0-9 '*:/._-]+$"
    )

    # Catalog (TOML) the service prices with; see docs/DOMAIN.md for its format.
    catalog_path: Path = PROJECT_DIR / "domain" / "catalogs" / "demo.toml"

    # Stripe (docs/PAYMENTS.md). The API key may be a restricted key with write access to
    # PaymentIntents and Checkout Sessions and read access to Customers, Refunds, Disputes.
    stripe_api_key: str = "sk_test_local"
    stripe_api_base: str = "https://api.stripe.com"
    stripe_timeout_seconds: float = Field(default=10.0, gt=0, le=80)
    # Webhook signing secrets, comma-separated: during a rotation both the old and new one.
    # Empty: every webhook is refused (signatures are never skipped).
    stripe_webhook_secrets: str = ""
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    webhook_max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    checkout_success_url: str = "http://127.0.0.1:8080/?checkout=success"
    checkout_cancel_url: str = "http://127.0.0.1:8080/?checkout=cancel"
    # The plan an account moves to when its Stripe subscription ends (cancel keeps purchases).
    payments_cancel_plan: str = Field(default="free", pattern=r"^[a-z][a-z0-9_]{0,63}$")

    # Read models, projector and API (issue 5); they price and tag with `catalog_path`.
    # Events per projector batch (one transaction per read model each).
    projector_batch_events: int = Field(default=1000, ge=1, le=10_000)
    # The projector wakes on NOTIFY; this polling interval is the fallback.
    projector_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # How long a read with `min_position` waits for the read model to reach it (then 504).
    read_wait_seconds: float = Field(default=5.0, ge=0, le=30)

    # Logs: "json" for machines, "console" for people.
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Settings:
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

    def all_topics(self) -> list[str]:
        return [self.topic(t) for t in Topic]

    def kafka_bootstrap_servers(self) -> list[tuple[str, int]]:
        servers: list[tuple[str, int]] = []
        for item in self.kafka_bootstrap.split(","):
            host, _, port = item.strip().rpartition(":")
            servers.append((host, int(port)))
        return servers

    def stripe_webhook_secret_list(self) -> list[str]:
        return [s.strip() for s in self.stripe_webhook_secrets.split(",") if s.strip()]

    def portal_token_secret_list(self) -> list[str]:
        return [s.strip() for s in self.portal_token_secrets.split(",") if s.strip()]

    def pg_dsn(self, database: str | None = None) -> str:
        return (
            f"postgresql://{self.pg_user}:{self.pg_password}@{self.pg_host}:{self.pg_port}/"
            f"{database or self.pg_database}"
        )


def _host_name() -> str:
    """This host's name, in the characters a Kafka topic name allows."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64] or "local"
