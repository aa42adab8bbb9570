"""What the payment side writes into Stripe metadata, and reads back from webhooks.

Every Checkout Session and PaymentIntent this service creates carries the same keys (prefixed
`credits_` so they never collide with the host product's own metadata). Stripe metadata values
are strings; they are validated here before anything becomes a command. An object without
`credits_kind` was not created by this service and is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from infra.dlq import DlqCode
from services.payments.errors import BadInput

KIND = "credits_kind"
ACCOUNT_ID = "credits_account_id"
PACK = "credits_pack"
CREDIT_TYPE = "credits_credit_type"
CREDITS = "credits_amount"
TOP_UP_ID = "credits_top_up_id"
PLAN = "credits_plan"

Kind = Literal["pack", "amount", "top_up"]
_KINDS: frozenset[str] = frozenset({"pack", "amount", "top_up"})
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_POSITIVE = re.compile(r"[1-9][0-9]{0,14}")  # 1 .. 10^15 - 1, no sign, no float


@dataclass(frozen=True)
class PaymentMetadata:
    """What a payment buys: a pack, an amount of a credit type, or a pending top-up."""

    account_id: str
    kind: Kind
    credit_type: str
    credits: int
    pack: str | None = None
    top_up_id: str | None = None

    def to_stripe(self) -> dict[str, str]:
        values = {
            KIND: self.kind,
            ACCOUNT_ID: self.account_id,
            CREDIT_TYPE: self.credit_type,
            CREDITS: str(self.credits),
            PACK: self.pack,
            TOP_UP_ID: self.top_up_id,
        }
        return {k: v for k, v in values.items() if v is not None}


def of(metadata: Any) -> Mapping[str, Any]:
    """A Stripe object's `metadata` (absent: empty); anything but an object is refused."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise BadInput(DlqCode.INVALID_METADATA, "metadata: not an object")
    return metadata


def account_of(metadata: Any) -> str | None:
    """The account a Stripe object (customer, subscription) belongs to; validated."""
    value = of(metadata).get(ACCOUNT_ID)
    if value is None:
        return None
    return identifier(value, ACCOUNT_ID)


def payment_metadata(metadata: Any) -> PaymentMetadata | None:
    """Parse our keys; None when the object is not ours; `BadInput` when ours but wrong."""
    data = of(metadata)
    kind = data.get(KIND)
    if kind is None:
        return None
    # Any JSON value may come here: a list or an object is not hashable, so not looked up.
    if not isinstance(kind, str) or kind not in _KINDS:
        raise BadInput(DlqCode.INVALID_METADATA, f"{KIND}: unknown kind {kind!r}")
    account_id = identifier(data.get(ACCOUNT_ID), ACCOUNT_ID)
    credit_type = name(data.get(CREDIT_TYPE), CREDIT_TYPE)
    credits = positive(data.get(CREDITS), CREDITS)
    pack = name(data.get(PACK), PACK) if kind == "pack" else None
    top_up_id = identifier(data.get(TOP_UP_ID), TOP_UP_ID) if kind == "top_up" else None
    return PaymentMetadata(account_id, cast(Kind, kind), credit_type, credits, pack, top_up_id)


def identifier(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise BadInput(DlqCode.INVALID_METADATA, f"{key}: not an id: {value!r}"[:300])
    return value


def name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise BadInput(DlqCode.INVALID_METADATA, f"{key}: not a name: {value!r}"[:300])
    return value


def positive(value: Any, key: str) -> int:
    if not isinstance(value, str) or not _POSITIVE.fullmatch(value):
        raise BadInput(DlqCode.INVALID_METADATA, f"{key}: not a positive integer: {value!r}"[:300])
    return int(value)
