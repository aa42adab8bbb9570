"""Prometheus metrics every component shares (one registry per process, served by `/metrics`).

Others increment these: the API and the Kafka ledger consumer count commands by reply status,
the consumer counts what it sends to the DLQ, the projector sets its lag.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

COMMANDS = Counter(
    "credits_commands",
    "Commands handled, by reply status (accepted, rejected, duplicate) and entry point.",
    ["status", "via"],
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
