"""A PostgreSQL server and a Kafka broker of the fault tests' own, which they may stop and kill.

The shared local stack (`make test` starts it) serves every other test at the same time, so
the tests that take servers down start their own pair on other ports, with their state under
`.local/faults/`, through the same scripts (`deploy/local/postgres.sh`,
`deploy/local/kafka.sh`) that start the shared one. Ports: PostgreSQL 25433, Kafka 19092
(controller 19093); each can be moved with
CREDITS_FAULTS_PG_PORT and CREDITS_FAULTS_KAFKA_PORT. Both sit below the kernel's ephemeral range
(32768-60999 on Linux): a server that is stopped and started again must find its port free, and
a port in that range can meanwhile be taken as the local end of some client's connection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from infra.settings import PROJECT_DIR, Settings

PG_PORT = int(os.environ.get("CREDITS_FAULTS_PG_PORT", "25433"))
KAFKA_PORT = int(os.environ.get("CREDITS_FAULTS_KAFKA_PORT", "19092"))
LOCAL_DIR = PROJECT_DIR / ".local" / "faults"
# Bounds: a server that does not answer within these is a failed fixture, not a hung run.
START_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class PrivateStack:
    settings: Settings

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CREDITS_LOCAL_DIR": str(LOCAL_DIR),
            "CREDITS_PG_PORT": str(PG_PORT),
            "CREDITS_KAFKA_BOOTSTRAP": f"127.0.0.1:{KAFKA_PORT}",
            "CREDITS_KAFKA_CONTROLLER_PORT": str(KAFKA_PORT + 1),
            # Two brokers on two cores: the private one needs less room.
            "CREDITS_KAFKA_HEAP_MB": "512",
        }

    def _script(self, script: str, verb: str) -> None:
        subprocess.run(
            [str(PROJECT_DIR / "deploy" / "local" / script), verb],
            env=self.env(),
            check=True,
            timeout=START_TIMEOUT_SECONDS,
        )

    # ------------------------------------------------------------------ PostgreSQL

    def start_postgres(self) -> None:
        self._script("postgres.sh", "up")

    def stop_postgres_immediately(self) -> None:
        """`pg_ctl stop -m immediate`: every session cut, no shutdown checkpoint (a crash)."""
        data_dir = LOCAL_DIR / "pg" / "data"
        bin_dir = _pg_bin_dir()
        command = [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w"]
        command += ["-t", str(STOP_TIMEOUT_SECONDS), "stop"]
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, timeout=STOP_TIMEOUT_SECONDS, capture_output=True)

    # ------------------------------------------------------------------ Kafka

    def start_kafka(self) -> None:
        self._script("kafka.sh", "up")

    def kill_kafka(self) -> None:
        """SIGKILL to the broker: no controlled shutdown, as a crashed host."""
        pid_file = LOCAL_DIR / "kafka" / "kafka.pid"
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        self._script("kafka.sh", "down")
        self._script("postgres.sh", "down")


def start_private_stack(base: Settings) -> PrivateStack:
    stack = PrivateStack(
        base.model_copy(update={"pg_port": PG_PORT, "kafka_bootstrap": f"127.0.0.1:{KAFKA_PORT}"})
    )
    stack.start_postgres()
    stack.start_kafka()
    return stack


def _pg_bin_dir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name)
    assert candidates, "PostgreSQL is not installed (deploy/local/postgres.sh installs it)"
    return candidates[-1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie until its parent (the shell that started it is gone) reaps it: dead for us.
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return status != "Z"
