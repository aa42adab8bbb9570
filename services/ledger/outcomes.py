"""What the ledger tells of each command it answered: counted by type, status and door, its
latency observed, and one log line (docs/OPERATIONS.md lists the fields).

Per command, so kept cheap: label lookups and one structlog call of plain values, nothing
serialised that the reply does not already hold.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import structlog

from domain.replies import Reply
from infra.metrics import COMMAND_SECONDS, COMMANDS
from services.ledger.records import CommandRecord

log = structlog.get_logger("credits.ledger.commands")

DOOR = "kafka"


def answered(outcomes: Iterable[tuple[CommandRecord, str, Reply | None]]) -> None:
    """(record, command type, reply) of each command decided; no reply: refused unanswered."""
    now_ms = time.time() * 1000
    for record, kind, reply in outcomes:
        status = reply.status if reply is not None else "rejected"
        COMMANDS.labels(kind, status, DOOR).inc()
        latency_ms = None
        if record.timestamp_ms is not None and record.timestamp_ms > 0:
            # Clocks of producer and ledger hosts differ: never a negative latency.
            latency_ms = max(now_ms - record.timestamp_ms, 0.0)
            COMMAND_SECONDS.labels(kind, status, DOOR).observe(latency_ms / 1000)
        error = reply.error if reply is not None else None
        log.info(
            "command",
            account_id=reply.account_id if reply is not None else None,
            command_id=reply.command_id if reply is not None else None,
            type=kind,
            status=status,
            error_code=error.code.value if error is not None else None,
            correlation_id=_text(record.header("correlation_id")),
            trace_id=None,
            latency_ms=round(latency_ms, 1) if latency_ms is not None else None,
            partition=record.partition,
            offset=record.offset,
        )


def _text(value: bytes | None) -> str | None:
    """A header for a log line: bounded, and never an exception on bytes that are not text."""
    if value is None:
        return None
    return value[:128].decode("utf-8", "replace")
