"""The ledger's span for each traced command of a batch (one whose record has a valid W3C
`traceparent` header): its trace goes on to the reply's headers and, stored with the command's
receipt, to the CloudEvents of the events it produced (infra/tracing.py).

Commands without a trace get no span: an untraced batch costs a header scan per record.
"""

from __future__ import annotations

import time

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from domain.replies import Reply
from infra.tracing import TRACER, context_from_headers, trace_id_of, traceparent_of
from services.ledger.records import Decoded


class CommandSpans:
    def __init__(self, commands: list[Decoded]) -> None:
        # (partition, offset) -> the command's span
        self._spans: dict[tuple[int, int], Span] = {}
        # (account id, command id) -> its traceparent, saved with the receipt
        self.traceparents: dict[tuple[str, str], str] = {}
        started_ns = time.time_ns()
        for decoded in commands:
            record = decoded.record
            parent = context_from_headers(record.headers)
            if parent is None:
                continue
            command = decoded.command
            span = TRACER.start_span(
                f"ledger {command.type}",
                context=parent,
                kind=SpanKind.CONSUMER,
                start_time=started_ns,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": record.topic,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset,
                    "credits.command.type": command.type,
                    "credits.account_id": command.account_id,
                    "credits.command_id": command.command_id,
                },
            )
            self._spans[(record.partition, record.offset)] = span
            traceparent = traceparent_of(span)
            if traceparent is not None:
                self.traceparents[(command.account_id, command.command_id)] = traceparent

    def traceparent(self, partition: int, offset: int) -> bytes | None:
        span = self._spans.get((partition, offset))
        traceparent = traceparent_of(span) if span is not None else None
        return traceparent.encode() if traceparent is not None else None

    def trace_id(self, partition: int, offset: int) -> str | None:
        span = self._spans.get((partition, offset))
        return trace_id_of(span) if span is not None else None

    def end(
        self, commands: list[Decoded], replies: list[Reply] | None, error: object = None
    ) -> None:
        """Ends every span: with each command's reply, or with the error that failed them."""
        if not self._spans:
            return
        outcome = dict(zip((d.record for d in commands), replies or (), strict=False))
        for decoded in commands:
            span = self._spans.get((decoded.record.partition, decoded.record.offset))
            if span is None:
                continue
            reply = outcome.get(decoded.record)
            if reply is not None:
                span.set_attribute("credits.reply.status", reply.status)
                if reply.error is not None:
                    span.set_attribute("credits.error_code", reply.error.code.value)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
            span.end()
        self._spans.clear()
