"""The Stripe client of the payment side: async (httpx), bounded timeouts and retries."""

from __future__ import annotations

from typing import Any

import stripe

from infra.settings import Settings

# The SDK retries network errors and 409/429/5xx itself, reusing the idempotency key it sends.
SDK_NETWORK_RETRIES = 2


def build_stripe_client(settings: Settings) -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.stripe_api_key,
        base_addresses={"api": settings.stripe_api_base.rstrip("/")},
        http_client=stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds),
        max_network_retries=SDK_NETWORK_RETRIES,
    )


def as_dict(obj: Any) -> dict[str, Any]:
    """A Stripe SDK object as plain nested dicts (the mapping functions take dicts)."""
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict(recursive=True)
    assert isinstance(obj, dict), type(obj)
    return obj


TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    stripe.APIConnectionError,
    stripe.RateLimitError,
    stripe.APIError,
)
