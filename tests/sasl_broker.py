"""A Kafka broker of the SASL tests' own, with a SASL/PLAIN listener (`deploy/local/kafka.sh`).

The shared local broker (`make test` starts it, other worktrees use it) was started without a
SASL listener, and listeners are set when a broker starts: it cannot be given one without a
restart under everyone's feet. So the SASL tests start their own broker through the same script,
state under `.local/sasl/`, on ports of their own: PLAINTEXT 9492, controller 9493, SASL_PLAINTEXT
9494 (CREDITS_SASL_TEST_KAFKA_PORT moves all three). The jars are resolved once into
`.local/sasl/kafka/libs` (from the local Maven cache after the first time); a start takes ~10 s.
Its one user gets a new random password at every start.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass

from pydantic import SecretStr

from infra.settings import PROJECT_DIR, Settings

BASE_PORT = int(os.environ.get("CREDITS_SASL_TEST_KAFKA_PORT", "9492"))
LOCAL_DIR = PROJECT_DIR / ".local" / "sasl"
USERNAME = "credits-sasl-test"
# Bounds: a broker that does not answer within these is a failed fixture, not a hung run.
START_TIMEOUT_SECONDS = 240
STOP_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class SaslBroker:
    plaintext_port: int
    sasl_port: int
    password: str

    def sasl_settings(self, base: Settings, **changes: object) -> Settings:
        """Settings of a client that logs in on the SASL listener (`changes` override)."""
        return Settings.model_validate(
            {
                **base.model_dump(),
                "kafka_bootstrap": f"127.0.0.1:{self.sasl_port}",
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": USERNAME,
                "kafka_sasl_password": SecretStr(self.password),
                **changes,
            }
        )

    def plaintext_settings(self, base: Settings) -> Settings:
        return base.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{self.plaintext_port}"})


def _env(password: str) -> dict[str, str]:
    return {
        **os.environ,
        "CREDITS_LOCAL_DIR": str(LOCAL_DIR),
        "CREDITS_KAFKA_BOOTSTRAP": f"127.0.0.1:{BASE_PORT}",
        "CREDITS_KAFKA_CONTROLLER_PORT": str(BASE_PORT + 1),
        "CREDITS_KAFKA_SASL_PORT": str(BASE_PORT + 2),
        "CREDITS_KAFKA_SASL_USERS": f"{USERNAME}:{password}",
        # Beside the shared broker on two cores: little room.
        "CREDITS_KAFKA_HEAP_MB": "384",
    }


def _script(verb: str, env: dict[str, str], timeout_seconds: float) -> None:
    subprocess.run(
        [str(PROJECT_DIR / "deploy" / "local" / "kafka.sh"), verb],
        env=env,
        check=True,
        timeout=timeout_seconds,
    )


def start_sasl_broker() -> SaslBroker:
    password = secrets.token_urlsafe(18)
    env = _env(password)
    # A broker a killed run left behind has the old password: ours, so stopped first.
    _script("down", env, STOP_TIMEOUT_SECONDS)
    _script("up", env, START_TIMEOUT_SECONDS)
    return SaslBroker(BASE_PORT, BASE_PORT + 2, password)


def stop_sasl_broker(broker: SaslBroker) -> None:
    _script("down", _env(broker.password), STOP_TIMEOUT_SECONDS)
