"""Prometheus counters of the payment side, on the process's one registry (`infra.metrics`),
so `/metrics` serves them with every other component's."""

from __future__ import annotations

import re

from prometheus_client import Counter

from infra.metrics import REGISTRY

STRIPE_EVENTS = Counter(
    "credits_payments_stripe_events_total",
    "Stripe events handled by the payment consumer, by type and outcome",
    ["type", "outcome"],
    registry=REGISTRY,
)
TOP_UP_REQUESTS = Counter(
    "credits_payments_top_up_requests_total",
    "credits.events records read by the payment consumer (top-up requests), by outcome",
    ["outcome"],
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "credits_payments_webhooks_total",
    "POST /webhooks/stripe answers, by outcome",
    ["outcome"],
    registry=REGISTRY,
)
REPLIES = Counter(
    "credits_payments_replies_total",
    "Ledger replies to the payment consumer's commands, by command type and status "
    "(accepted, duplicate, rejected, or invalid)",
    ["command", "status"],
    registry=REGISTRY,
)
REFUNDS = Counter(
    "credits_payments_refunds_total",
    "Payments the ledger refused, by outcome (refunded, refund_failed) and the ledger's code",
    ["outcome", "code"],
    registry=REGISTRY,
)

_LABEL = re.compile(r"[^a-z0-9_.]")


def label(value: str) -> str:
    """Stripe's event types form a bounded set; anything else is clipped to stay bounded."""
    return _LABEL.sub("_", value.lower())[:64] or "unknown"
