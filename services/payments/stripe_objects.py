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

from infra.dlq import DlqCode
from services.payments.errors import BadInput

MAX_CENTS = 10**15
_CURRENCY = re.compile(r"[a-z]{3}")
# Stripe ids and event types (`evt_…`, `pi_…`, `charge.refunded`): they go into command ids,
# payment references and PostgreSQL, so nothing else (NUL, surrogates, spaces) gets through.
_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,255}")


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadInput(DlqCode.INVALID_STRIPE_EVENT, f"{where}: not an object")
    return value


def text(obj: Mapping[str, Any], key: str) -> str:
    """An id-like field (ids, types): `[A-Za-z0-9_.:@-]`, at most 255 characters."""
    value = obj.get(key)
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise BadInput(DlqCode.INVALID_STRIPE_EVENT, f"{key}: missing or not an id")
    return value


def readable(value: str, max_chars: int) -> str:
    """Free text from Stripe (a decline message) made safe to store and send: printable
    characters only (no NUL, control characters or lone surrogates), at most `max_chars`."""
    return "".join(c for c in value[: max_chars * 2] if c.isprintable())[:max_chars]


def cents(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CENTS:
        raise BadInput(DlqCode.INVALID_STRIPE_EVENT, f"{key}: not an amount in minor units")
    return value


def currency(obj: Mapping[str, Any]) -> str:
    value = obj.get("currency")
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value.lower()):
        raise BadInput(DlqCode.INVALID_STRIPE_EVENT, "currency: not an ISO 4217 code")
    return value.lower()


def id_of(value: Any) -> str | None:
    """An id field that Stripe sends as a string, or as the expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        return None
    if not _ID.fullmatch(value):
        raise BadInput(DlqCode.INVALID_STRIPE_EVENT, "an id field holds something else than an id")
    return value
