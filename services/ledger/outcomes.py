"""What the ledger tells of each command it answered: counted by type, status and door, its
latency observed, and one log line (docs/OPERATIONS.md lists the fields).

Per command, so kept cheap: the metrics' children are looked up once per type and status, and
the lines of a batch are rendered and written together (infra/logs.py `BatchedLines`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics import Counter, Histogram

from domain.replies import Reply
from infra.logs import BatchedLines
from infra.metrics import COMMAND_SECONDS, COMMANDS
from services.ledger.records import CommandRecord

LINES = BatchedLines("credits.ledger.commands")

DOOR = "kafka"
# (type, status) -> the children of COMMANDS and COMMAND_SECONDS: bounded by the known types
# (and `invalid`) times three statuses.
_CHILDREN: dict[tuple[str, str], tuple[Counter, Histogram]] = {}


def answered(outcomes: Iterable[tuple[CommandRecord, str, Reply | None, str | None]]) -> None:
    """(record, command type, reply, trace id) of each command decided; no reply: refused
    unanswered; no trace id: the command came with no trace."""
    now_ms = time.time() * 1000
    rows: list[dict[str, Any]] = []
    # The lines are built only where they are written (a ledger logging at WARNING skips them).
    logging_lines = LINES.enabled()
    for record, kind, reply, trace_id in outcomes:
        status = reply.status if reply is not None else "rejected"
        children = _CHILDREN.get((kind, status))
        if children is None:
            children = _CHILDREN[(kind, status)] = (
                COMMANDS.labels(kind, status, DOOR),
                COMMAND_SECONDS.labels(kind, status, DOOR),
            )
        children[0].inc()
        latency_ms = None
        if record.timestamp_ms is not None and record.timestamp_ms > 0:
            # Clocks of producer and ledger hosts differ: never a negative latency.
            latency_ms = max(now_ms - record.timestamp_ms, 0.0)
            children[1].observe(latency_ms / 1000)
        if not logging_lines:
            continue
        error = reply.error if reply is not None else None
        rows.append(
            {
                "account_id": reply.account_id if reply is not None else None,
                "command_id": reply.command_id if reply is not None else None,
                "type": kind,
                "status": status,
                "error_code": error.code.value if error is not None else None,
                "correlation_id": _text(record.header("correlation_id")),
                "trace_id": trace_id,
                "latency_ms": round(latency_ms, 1) if latency_ms is not None else None,
                "partition": record.partition,
                "offset": record.offset,
            }
        )
    LINES.info("command", rows)


def _text(value: bytes | None) -> str | None:
    """A header for a log line: bounded, and never an exception on bytes that are not text."""
    if value is None:
        return None
    return value[:128].decode("utf-8", "replace")
