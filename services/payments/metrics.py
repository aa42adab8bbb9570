"""Prometheus counters of the payment side (default registry, served by the API's /metrics)."""

from __future__ import annotations

import re

from prometheus_client import Counter

STRIPE_EVENTS = Counter(
    "credits_payments_stripe_events_total",
    "Stripe events handled by the payment consumer, by type and outcome",
    ["type", "outcome"],
)
TOP_UP_REQUESTS = Counter(
    "credits_payments_top_up_requests_total",
    "credits.top_up_requested events handled, by outcome",
    ["outcome"],
)
WEBHOOKS = Counter(
    "credits_payments_webhooks_total",
    "POST /webhooks/stripe answers, by outcome",
    ["outcome"],
)

_LABEL = re.compile(r"[^a-z0-9_.]")


def label(value: str) -> str:
    """Stripe's event types form a bounded set; anything else is clipped to stay bounded."""
    return _LABEL.sub("_", value.lower())[:64] or "unknown"
