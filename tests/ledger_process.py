"""`credits run ledger` as a process of its own, as production runs it, for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from infra.settings import PROJECT_DIR, Settings
from tests.kit.ports import free_port


class LedgerProcess:
    """`python -m services.cli run ledger` against `settings`, its log in `log_path`."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        instance_id: str,
        catalog_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.instance_id = instance_id
        self.catalog_path = catalog_path or settings.catalog_path
        self.process: subprocess.Popen[bytes] | None = None
        self.ops_port = free_port()

    def start(self) -> None:
        env = {
            **os.environ,
            "CREDITS_PG_PORT": str(self.settings.pg_port),
            "CREDITS_PG_DATABASE": self.settings.pg_database,
            "CREDITS_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "CREDITS_TOPIC_PREFIX": self.settings.topic_prefix,
            "CREDITS_LEDGER_INSTANCE_ID": self.instance_id,
            # Each process serves its own ops port: several ledgers run side by side.
            "CREDITS_OPS_PORT": str(self.ops_port),
            "CREDITS_CATALOG_PATH": str(self.catalog_path),
            "CREDITS_LOG_FORMAT": "json",
            "CREDITS_LOG_LEVEL": "INFO",
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "run", "ledger"],
                env=env,
                cwd=PROJECT_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown at all, as a crashed host."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout_seconds: float) -> float:
        """SIGTERM; returns the seconds it took to exit (raises if it did not in time)."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            raise
        return time.monotonic() - started

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events
