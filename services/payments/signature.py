"""Webhook verification: the official SDK checks the signature over the raw body.

Several secrets are accepted at once (rotation: Stripe signs with both while the old one rolls
off, and a header may carry several `v1=` signatures). The signed timestamp must be within the
tolerance of now, in the past (the SDK's check) and in the future (ours: a clock skewed far
ahead is no more trustworthy). Nothing is decoded or trusted before the signature matches.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import stripe

from services.payments.errors import CodedError

# Stripe's event ids (`evt_…`): the Kafka key of the published event.
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,255}")


class Refusal(StrEnum):
    signature_missing = "signature_missing"
    signature_invalid = "signature_invalid"
    signature_expired = "signature_expired"
    invalid_event = "invalid_event"


class WebhookRefused(CodedError):
    code: Refusal


def verify_stripe_event(
    body: bytes,
    header: str | None,
    secrets: Sequence[str],
    tolerance_seconds: int,
    now: float | None = None,
) -> dict[str, Any]:
    """The verified event (a JSON object with `id` and `type`), or `WebhookRefused`."""
    if not header:
        raise WebhookRefused(Refusal.signature_missing, "no Stripe-Signature header")
    if not secrets:
        raise WebhookRefused(Refusal.signature_invalid, "no webhook secret is configured")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRefused(Refusal.signature_invalid, "the body is not UTF-8") from None
    now = time.time() if now is None else now
    matched = False
    for secret in secrets:
        try:
            # Signature only here: the tolerance is checked below, both ways, for every secret.
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
        except stripe.SignatureVerificationError:
            continue
        matched = True
        break
    if not matched:
        raise WebhookRefused(Refusal.signature_invalid, "no signature matches a webhook secret")
    timestamp = _timestamp(header)
    if abs(now - timestamp) > tolerance_seconds:
        raise WebhookRefused(
            Refusal.signature_expired,
            f"signed at {timestamp}, more than {tolerance_seconds} s from now",
        )
    # The SDK's own check as well, so that its notion of staleness always applies too.
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance_seconds)
    except stripe.SignatureVerificationError as e:
        raise WebhookRefused(Refusal.signature_expired, str(e)) from None
    try:
        event = json.loads(payload)
    except RecursionError:
        raise WebhookRefused(Refusal.invalid_event, "the body is nested too deep") from None
    except ValueError:
        raise WebhookRefused(Refusal.invalid_event, "the body is not JSON") from None
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and _EVENT_ID.fullmatch(event["id"]) is not None
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
    ):
        raise WebhookRefused(Refusal.invalid_event, "not a Stripe event (id, type, data)")
    return event


def _timestamp(header: str) -> int:
    # The SDK accepted the header, so `t=` is present and an integer.
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "t":
            return int(value)
    raise WebhookRefused(Refusal.signature_invalid, "no timestamp in Stripe-Signature")
