"""Tracing with OpenTelemetry: W3C `traceparent` through every door, spans where work happens.

A command's trace goes from its sender (an HTTP request's `traceparent` header, or a Kafka
command's) through the ledger, which answers with the trace in its reply's headers and stores
it with the command's receipt, to the relay, which puts it in each CloudEvent it publishes
(the CloudEvents distributed-tracing extension: a `traceparent` attribute). The payment consumer
carries a Stripe event's trace on to the commands it sends.

Off by default: no exporter, and no SDK at all, unless the standard variables ask for one
(`OTEL_TRACES_EXPORTER=otlp|console`, or `OTEL_EXPORTER_OTLP_ENDPOINT` /
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); the OTLP exporter then reads every other `OTEL_*`
variable itself (headers, protocol, timeout), the sampler `OTEL_TRACES_SAMPLER`. Without an SDK
the API's spans record nothing and cost next to nothing, and a `traceparent` received is passed
on unchanged, so the sender's trace still reaches the reply and the events.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = structlog.get_logger("credits.tracing")

TRACER = trace.get_tracer("credits")
TRACEPARENT = "traceparent"
# A traceparent is 55 characters (version 00); anything much longer is not one.
MAX_TRACEPARENT_CHARS = 128
_PROPAGATOR = TraceContextTextMapPropagator()


def exporter_wanted() -> str | None:
    """Which exporter the standard variables ask for: otlp, console, or None (tracing off)."""
    named = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named in ("otlp", "console"):
        return named
    if named == "none":
        return None
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return "otlp" if any(os.environ.get(name) for name in endpoints) else None


def configure_tracing(service_name: str) -> bool:
    """Installs the SDK with the exporter the environment asks for; False: tracing stays off."""
    wanted = exporter_wanted()
    if wanted is None:
        return False
    # Imported only when wanted: the SDK and exporter are not loaded by a process that does
    # not trace.
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the component's name.
    resource = Resource({"service.name": f"credits-{service_name}"}).merge(
        OTELResourceDetector().detect()
    )
    provider = TracerProvider(resource=resource)
    exporter: SpanExporter
    if wanted == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    # Batched and bounded (OTEL_BSP_* set the queue and batch sizes): spans are dropped, never
    # waited for, when the collector is slow or away.
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing", exporter=wanted)
    return True


def traceparent_of(span: Span) -> str | None:
    """The W3C traceparent naming this span (None for a span outside any trace)."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def trace_id_of(span: Span) -> str | None:
    context = span.get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def context_from_traceparent(traceparent: str | bytes | None) -> Context | None:
    """The context a traceparent names; None when absent or not a valid one."""
    if traceparent is None:
        return None
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("ascii", "replace")
    if len(traceparent) > MAX_TRACEPARENT_CHARS:
        return None
    context = _PROPAGATOR.extract({TRACEPARENT: traceparent})
    span_context: SpanContext = trace.get_current_span(context).get_span_context()
    return context if span_context.is_valid else None


def context_from_headers(headers: Iterable[tuple[str, bytes | None]]) -> Context | None:
    """The context of a Kafka record's `traceparent` header, if it has a valid one."""
    for name, value in headers:
        if name == TRACEPARENT:
            return context_from_traceparent(value)
    return None


def trace_headers(span: Span) -> Sequence[tuple[str, bytes]]:
    """Kafka headers carrying this span's trace (none when it is in no trace)."""
    traceparent = traceparent_of(span)
    return [(TRACEPARENT, traceparent.encode())] if traceparent else []
