"""`credits run COMPONENT` as a process of its own, pointed at the private stack, its JSON log
lines kept in a file the test reads back (state changes, recovery times, how much it logged)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from infra.settings import PROJECT_DIR, Settings


def component_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment `credits run` reads its settings from: the private stack's servers,
    the test's own database and topics, JSON logs."""
    return {
        **os.environ,
        "CREDITS_PG_HOST": settings.pg_host,
        "CREDITS_PG_PORT": str(settings.pg_port),
        "CREDITS_PG_DATABASE": settings.pg_database,
        "CREDITS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CREDITS_TOPIC_PREFIX": settings.topic_prefix,
        "CREDITS_HTTP_PORT": str(settings.http_port),
        "CREDITS_OPS_PORT": str(settings.ops_port),
        "CREDITS_LOG_FORMAT": "json",
        "CREDITS_LOG_LEVEL": "INFO",
        **extra,
    }


@dataclass(frozen=True)
class LogLine:
    at: float  # seconds since the epoch
    fields: dict[str, Any]

    @property
    def event(self) -> str:
        return str(self.fields.get("event", ""))


class ComponentProcess:
    def __init__(self, name: str, settings: Settings, log_dir: Path, **extra_env: str) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", name],
            cwd=PROJECT_DIR,
            env=component_env(settings, **extra_env),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.process.pid

    def lines(self) -> list[LogLine]:
        """Every JSON log line so far (a traceback's lines are skipped)."""
        found = []
        for raw in self.log_path.read_bytes().splitlines():
            try:
                fields = json.loads(raw)
                at = datetime.fromisoformat(fields["timestamp"]).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            found.append(LogLine(at, fields))
        return found

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def state_changes(self, component: str) -> list[tuple[float, bool]]:
        """(when, ready) for each readiness change the component logged."""
        return [
            (line.at, line.event == "ready")
            for line in self.lines()
            if line.event in ("ready", "not ready") and line.fields.get("component") == component
        ]

    def is_ready(self, component: str) -> bool:
        changes = self.state_changes(component)
        return bool(changes) and changes[-1][1]

    def running(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout_seconds: float) -> tuple[float, int | None]:
        """SIGTERM, then wait: (seconds until it ended, exit status; None if it did not end)."""
        sent_at = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            return time.monotonic() - sent_at, None
        return time.monotonic() - sent_at, status

    def kill(self) -> None:
        """The end of a test that failed: this process, by its id, and nothing else."""
        if self.running():
            self.process.kill()
            self.process.wait(timeout=30)
        self._log_file.close()
