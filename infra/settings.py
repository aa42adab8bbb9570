"""Settings from environment variables (12-factor), each with a default that works locally.

Every variable is listed in the README's settings table; `make run` and `make test` use the
defaults, which point at the local stack that `deploy/local/postgres.sh` and
`deploy/local/kafka.sh` start.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from credits_client.connection import KafkaSettings, Topic
from pydantic import Field

PROJECT_DIR = Path(__file__).resolve().parent.parent

__all__ = ["PROJECT_DIR", "Settings", "Topic"]


class Settings(KafkaSettings):
    """Every component's settings: the Kafka connection, topics and security (`KafkaSettings`,
    the producer client's, read from the same `CREDITS_` variables), and the rest below."""

    # PostgreSQL: the event store and the read models.
    pg_host: str = "127.0.0.1"
    pg_port: int = Field(default=55432, ge=1, le=65535)
    pg_user: str = "credits"
    pg_password: str = "credits"
    pg_database: str = "credits"
    # Most connections of each of a process's two pools (its event store's, its asyncpg one: see
    # infra/process_event_store.py). Two cores: a handful saturates them; more only queue in
    # PostgreSQL.
    pg_pool_size: int = Field(default=4, ge=1, le=64)
    pg_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    # Kafka topics' partitions, fixed at creation: the key (account id) decides the partition,
    # so changing it later would reorder accounts. Four suits two cores; more partitions only
    # add consumer overhead here.
    topic_partitions: int = Field(default=4, ge=1, le=256)
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

    # The CloudEvents `sequence` the relay publishes: "string" (contract 2.0: 20 zero-padded
    # digits, ordered as text) or "integer" (contract 1.0's JSON number), kept for one release
    # while consumers move (docs/CHANGELOG.md).
    cloudevents_sequence: str = Field(default="string", pattern="^(string|integer)$")

    # Read models, projector and API; they price and tag with `catalog_path`.
    # Events per projector batch (one transaction per read model each).
    projector_batch_events: int = Field(default=1000, ge=1, le=10_000)
    # The projector wakes on NOTIFY; this polling interval is the fallback.
    projector_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # How long a read with `min_position` waits for the read model to reach it (then 504).
    read_wait_seconds: float = Field(default=5.0, ge=0, le=30)

    # Logs: "json" for machines, "console" for people.
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")

    def all_topics(self) -> list[str]:
        return [self.topic(t) for t in Topic]

    def secret_values(self) -> list[str]:
        """Every credential in these settings, for the log to blank out wherever one shows."""
        return [
            value
            for value in (
                self.pg_password,
                self.kafka_sasl_password.get_secret_value(),
                self.kafka_ssl_key_password.get_secret_value(),
                self.stripe_api_key,
                *self.stripe_webhook_secret_list(),
                *self.portal_token_secret_list(),
            )
            if value
        ]

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
