"""Checkout Sessions: what an account may buy (pure pricing) and the Stripe request for it.

`POST /v1/checkout` takes `{account_id, pack}` or `{account_id, credit_type, amount_cents}`.
The catalog decides: the plan must be allowed to buy the pack (or be a buyer of the credit type
with a purchase rate), the amount must be within the plan's `min_cents..max_cents`, and the
credits are the catalog's conversion. The ledger checks all of it again when the payment lands
(it is the authority); checking here keeps customers from paying for what will be refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain.catalog import MAX_AMOUNT, Catalog
from domain.errors import ErrorCode
from services.payments.errors import CodedError
from services.payments.metadata import PaymentMetadata

MAX_REQUEST_BYTES = 4096


class CheckoutRefused(CodedError):
    code: ErrorCode


class CheckoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    account_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@-]{1,128}$")]
    pack: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = None
    credit_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = None
    amount_cents: Annotated[int, Field(ge=1, le=MAX_AMOUNT)] | None = None

    @model_validator(mode="after")
    def _pack_or_amount(self) -> CheckoutRequest:
        by_pack = self.pack is not None and self.credit_type is None and self.amount_cents is None
        by_amount = (
            self.pack is None and self.credit_type is not None and self.amount_cents is not None
        )
        if not (by_pack or by_amount):
            raise ValueError("give either pack, or credit_type and amount_cents")
        return self


@dataclass(frozen=True)
class CheckoutOrder:
    meta: PaymentMetadata
    amount_cents: int
    currency: str
    description: str


def parse_checkout_request(body: bytes) -> CheckoutRequest:
    if len(body) > MAX_REQUEST_BYTES:
        raise CheckoutRefused(ErrorCode.invalid_command, f"body is over {MAX_REQUEST_BYTES} bytes")
    try:
        return CheckoutRequest.model_validate_json(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<body>"
        message = first["msg"].removeprefix("Value error, ")
        raise CheckoutRefused(ErrorCode.invalid_command, f"{where}: {message}") from None


def price_checkout(catalog: Catalog, plan: str, request: CheckoutRequest) -> CheckoutOrder:
    """What the account on `plan` pays and gets, or `CheckoutRefused` (never a partial order)."""
    if plan not in catalog.plans:
        raise CheckoutRefused(ErrorCode.unknown_plan, f"plan {plan!r} is not in the catalog")
    if request.pack is not None:
        pack = catalog.packs.get(request.pack)
        if pack is None:
            raise CheckoutRefused(ErrorCode.invalid_command, f"no pack {request.pack!r}")
        if not catalog.may_buy_pack(plan, pack):
            raise CheckoutRefused(
                ErrorCode.not_eligible, f"plan {plan!r} may not buy pack {request.pack!r}"
            )
        if pack.price_cents < 1:
            raise CheckoutRefused(ErrorCode.invalid_command, f"pack {request.pack!r} is free")
        meta = PaymentMetadata(
            request.account_id, "pack", pack.credit_type, pack.amount, pack=request.pack
        )
        name = pack.name or f"{pack.amount} {pack.credit_type}"
        return CheckoutOrder(meta, pack.price_cents, catalog.pack_currency(pack), name)

    assert request.credit_type is not None and request.amount_cents is not None
    credit_type, amount_cents = request.credit_type, request.amount_cents
    if credit_type not in catalog.credit_types:
        raise CheckoutRefused(ErrorCode.invalid_command, f"no credit type {credit_type!r}")
    rate = catalog.plans[plan].purchase.get(credit_type)
    if rate is None or not catalog.may_buy(plan, credit_type):
        raise CheckoutRefused(ErrorCode.not_eligible, f"plan {plan!r} may not buy {credit_type}")
    if amount_cents < rate.min_cents:
        raise CheckoutRefused(
            ErrorCode.invalid_command, f"amount_cents is below the minimum {rate.min_cents}"
        )
    if rate.max_cents is not None and amount_cents > rate.max_cents:
        raise CheckoutRefused(
            ErrorCode.invalid_command, f"amount_cents is above the maximum {rate.max_cents}"
        )
    credits = amount_cents * rate.credits // rate.per_cents
    if credits < 1:
        raise CheckoutRefused(ErrorCode.invalid_command, "amount_cents buys no credits")
    meta = PaymentMetadata(request.account_id, "amount", credit_type, credits)
    name = f"{credits} {credit_type}"
    return CheckoutOrder(meta, amount_cents, catalog.currency_of(plan), name)


def session_params(
    order: CheckoutOrder,
    *,
    customer_id: str | None,
    success_url: str,
    cancel_url: str,
) -> dict[str, Any]:
    """The Checkout Session create request: one line item, our metadata on session and intent.

    The PaymentIntent carries the same metadata, so that its own events, refunds and disputes
    map back to the account; `setup_future_usage` saves the card for off-session top-ups.
    """
    metadata = order.meta.to_stripe()
    params: dict[str, Any] = {
        "mode": "payment",
        "client_reference_id": order.meta.account_id,
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": order.currency,
                    "unit_amount": order.amount_cents,
                    "product_data": {"name": order.description},
                },
            }
        ],
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata, "setup_future_usage": "off_session"},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if customer_id is not None:
        params["customer"] = customer_id
    else:
        params["customer_creation"] = "always"
    return params
