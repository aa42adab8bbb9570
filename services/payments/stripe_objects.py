"""Reading fields of Stripe objects decoded from JSON (webhooks) or converted with `to_dict`.

stripe-python 16 objects are not dicts (DESIGN §8): everything here takes plain dicts, and
fields that Stripe may send either as an id or expanded (`payment_intent`, `charge`) are read
with `id_of`. Each reader raises `BadInput` naming the field, so a malformed event goes to the
DLQ with a reason instead of failing somewhere later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from services.payments.errors import BadInput, ErrorCode

MAX_CENTS = 10**15
_CURRENCY = re.compile(r"^[a-z]{3}$")


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadInput(ErrorCode.invalid_stripe_event, f"{where}: not an object")
    return value


def text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > 255:
        raise BadInput(ErrorCode.invalid_stripe_event, f"{key}: missing or not a string")
    return value


def cents(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CENTS:
        raise BadInput(ErrorCode.invalid_stripe_event, f"{key}: not an amount in minor units")
    return value


def currency(obj: Mapping[str, Any]) -> str:
    value = obj.get("currency")
    if not isinstance(value, str) or not _CURRENCY.match(value.lower()):
        raise BadInput(ErrorCode.invalid_stripe_event, "currency: not an ISO 4217 code")
    return value.lower()


def id_of(value: Any) -> str | None:
    """An id field that Stripe sends as a string, or as the expanded object."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None
