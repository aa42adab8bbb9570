"""Webhook verification over the raw body, with the SDK's own signing helper as the sender."""

from __future__ import annotations

import json
import time

import pytest
import stripe

from services.payments.signature import WebhookRefused, verify_stripe_event

OLD, NEW = "whsec_old", "whsec_new"
EVENT = {"id": "evt_1", "object": "event", "type": "charge.refunded", "data": {"object": {}}}
BODY = json.dumps(EVENT).encode()


def header(body: bytes = BODY, secret: str = NEW, at: float | None = None) -> str:
    timestamp = int(time.time() if at is None else at)
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp)


@pytest.mark.parametrize("secret", [OLD, NEW])
def test_either_secret_of_a_rotation_verifies(secret: str) -> None:
    assert verify_stripe_event(BODY, header(secret=secret), [OLD, NEW], 300) == EVENT


def test_a_header_with_both_signatures_verifies_with_the_new_secret_alone() -> None:
    at = int(time.time())
    both = header(secret=OLD, at=at) + "," + header(secret=NEW, at=at).split(",")[1]
    assert verify_stripe_event(BODY, both, [NEW], 300)["id"] == "evt_1"


SIGNED_AT_TEST_TIME = "signed at test time"


@pytest.mark.parametrize(
    ("body", "signature", "code"),
    [
        (BODY, None, "signature_missing"),
        (BODY, "", "signature_missing"),
        (BODY, header(secret="whsec_someone_else"), "signature_invalid"),
        (BODY.replace(b"evt_1", b"evt_2"), header(), "signature_invalid"),  # body altered
        (BODY, "t=abc,v1=def", "signature_invalid"),
        (b"\xff\xfe", header(), "signature_invalid"),
        (b"[1, 2]", SIGNED_AT_TEST_TIME, "invalid_event"),
        (b'{"id": "evt_1"}', SIGNED_AT_TEST_TIME, "invalid_event"),
    ],
)
def test_bad_missing_and_stale_signatures_are_refused(
    body: bytes, signature: str | None, code: str
) -> None:
    if signature == SIGNED_AT_TEST_TIME:
        # Signed now, not when the module was collected: the suite runs longer than the tolerance.
        signature = header(body)
    with pytest.raises(WebhookRefused) as refused:
        verify_stripe_event(body, signature, [OLD, NEW], 300)
    assert refused.value.code == code


@pytest.mark.parametrize("off_by_seconds", [-400, 400])
def test_a_timestamp_outside_the_tolerance_is_refused(off_by_seconds: int) -> None:
    # Signed now, not when the module was collected: the suite runs longer than the tolerance.
    signature = header(at=time.time() + off_by_seconds)
    with pytest.raises(WebhookRefused) as refused:
        verify_stripe_event(BODY, signature, [OLD, NEW], 300)
    assert refused.value.code == "signature_expired"


def test_no_configured_secret_refuses_everything() -> None:
    with pytest.raises(WebhookRefused):
        verify_stripe_event(BODY, header(), [], 300)
