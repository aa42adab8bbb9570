"""Prometheus metrics every component shares (one registry per process, served by `/metrics`).

Others increment these: the API and the Kafka ledger consumer count commands by type, reply
status and door, the consumer counts what it sends to the DLQ, the projector sets its lag. The
process collectors (CPU, memory, file descriptors, garbage collection) are on it too.
docs/OPERATIONS.md lists them all; deploy/grafana/credits.json charts them.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from domain.commands import COMMAND_TYPES

REGISTRY = CollectorRegistry(auto_describe=True)
# The same collectors prometheus_client puts on its default registry, on ours.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Latency buckets from a millisecond (an in-process decision) to ten seconds (the API's wait).
LATENCY_BUCKETS_SECONDS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

LOG_LINES_DROPPED = Counter(
    "credits_log_lines_dropped",
    "Log lines not written because the log stream failed (closed, a broken pipe, a full disk): "
    "a command's work never waits on, or fails with, its log line.",
    registry=REGISTRY,
)
COMMANDS = Counter(
    "credits_commands",
    "Commands answered, by command type, reply status (accepted, rejected, duplicate) and door "
    "(kafka: the ledger's consumer; http: the API's POST .../commands).",
    ["type", "status", "door"],
    registry=REGISTRY,
)
COMMAND_SECONDS = Histogram(
    "credits_command_seconds",
    "Command to reply: for the kafka door from the record's timestamp to its reply decided "
    "(time in Kafka included), for the http door from the request to the ledger's reply.",
    ["type", "status", "door"],
    buckets=LATENCY_BUCKETS_SECONDS,
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "credits_consumer_lag_records",
    "Records of a partition not yet read by a consumer group (high watermark - position), "
    "as of its last fetch.",
    ["group", "topic", "partition"],
    registry=REGISTRY,
)
RELAY_LAG = Gauge(
    "credits_relay_lag_events",
    "Events in the event store the relay has not yet published (log head - its position).",
    registry=REGISTRY,
)
RELAY_PUBLISHED = Counter(
    "credits_relay_published_events",
    "Events the relay published to credits.events (acknowledged by Kafka).",
    registry=REGISTRY,
)
SCHEDULER_DUE = Gauge(
    "credits_scheduler_due_commands",
    "Time-driven commands due now that the scheduler has not sent yet (as of its last look, "
    "at most one batch).",
    registry=REGISTRY,
)
SCHEDULER_SENT = Counter(
    "credits_scheduler_sent_commands",
    "Time-driven commands the scheduler sent (acknowledged by Kafka).",
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "credits_http_requests",
    "HTTP requests answered by the API, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "credits_http_request_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS_SECONDS,
    registry=REGISTRY,
)
STRIPE_SECONDS = Histogram(
    "credits_stripe_request_seconds",
    "Calls to the Stripe API, by operation and outcome (ok, or the error's class).",
    ["operation", "outcome"],
    buckets=LATENCY_BUCKETS_SECONDS,
    registry=REGISTRY,
)
DLQ_MESSAGES = Counter(
    "credits_dlq_messages",
    "Messages sent to the dead-letter topic, by error code.",
    ["code"],
    registry=REGISTRY,
)
COMPONENT_READY = Gauge(
    "credits_component_ready",
    "1 while a component of this process can do its work, 0 while it cannot (an outage, a "
    "halt, starting or stopped); the reason is in /readyz and the log.",
    ["component"],
    registry=REGISTRY,
)
PROJECTION_LAG = Gauge(
    "credits_projection_lag_events",
    "Events in the store not yet applied to a read model (max notification id - position).",
    ["projection"],
    registry=REGISTRY,
)
PROJECTION_SKIPPED_EVENTS = Counter(
    "credits_projection_skipped_events",
    "Events a read model went past without applying them (listed in rm_skipped_events).",
    ["projection"],
    registry=REGISTRY,
)
PROJECTION_POSITION = Gauge(
    "credits_projection_position",
    "Notification id a read model has applied up to.",
    ["projection"],
    registry=REGISTRY,
)

LEDGER_BATCH_SECONDS = Histogram(
    "credits_ledger_batch_seconds",
    "Time the Kafka ledger spends per batch, by phase: apply (decide + one database "
    "transaction), reply (send and wait for Kafka's acks), commit (offsets to Kafka).",
    ["phase"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
LEDGER_BATCH_RECORDS = Histogram(
    "credits_ledger_batch_records",
    "Records per batch the Kafka ledger applies in one transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
    registry=REGISTRY,
)
REPLY_TO_FALLBACKS = Counter(
    "credits_ledger_reply_to_fallbacks",
    "Replies sent to the default replies topic instead of the command's reply_to, by reason "
    "(unknown_topic: it does not exist; refused: the broker refuses sends to it).",
    ["reason"],
    registry=REGISTRY,
)


def command_type(value: object) -> str:
    """A command's type as a label: one of the known types, else `invalid` (bounded)."""
    return value if isinstance(value, str) and value in COMMAND_TYPES else "invalid"
