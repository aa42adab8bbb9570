"""Checkout Sessions: what an account may buy and the Stripe request for it.

`POST /v1/checkout` takes `{account_id, pack}` or `{account_id, credit_type, amount_cents}`.
The prices are the account's own rules (`domain.pricing`, from the catalog): the plan must be
allowed to buy the pack (or be a buyer of the credit type with a purchase rate), the amount must
be within the plan's `min_cents..max_cents`, and the credits are the rate's conversion. The
ledger applies the same rules again when the payment lands (it is the authority); quoting with
them here keeps customers from paying for what will be refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain import pricing
from domain.catalog import MAX_AMOUNT, Catalog
from domain.errors import ErrorCode, LedgerError
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
    """What the account on `plan` pays and gets, or `CheckoutRefused` (never a partial order).

    The prices and eligibility are the account's own (`domain.pricing`), so checkout refuses
    what the ledger would; checkout adds only what Stripe needs: something to charge."""
    if plan not in catalog.plans:
        raise CheckoutRefused(ErrorCode.unknown_plan, f"plan {plan!r} is not in the catalog")
    try:
        if request.pack is not None:
            return _pack_order(catalog, plan, request.account_id, request.pack)
        assert request.credit_type is not None and request.amount_cents is not None
        return _amount_order(
            catalog, plan, request.account_id, request.credit_type, request.amount_cents
        )
    except LedgerError as refused:
        raise CheckoutRefused(refused.code, refused.message) from None


def _pack_order(catalog: Catalog, plan: str, account_id: str, pack: str) -> CheckoutOrder:
    offer = pricing.pack_offer(catalog, plan, pack)
    if offer.price.cents < 1:
        raise CheckoutRefused(ErrorCode.invalid_command, f"pack {pack!r} is free")
    meta = PaymentMetadata(account_id, "pack", offer.credit_type, offer.credits, pack=offer.pack)
    return CheckoutOrder(meta, offer.price.cents, offer.price.currency, offer.name)


def _amount_order(
    catalog: Catalog, plan: str, account_id: str, credit_type: str, amount_cents: int
) -> CheckoutOrder:
    rate = pricing.purchase_rate(catalog, plan, credit_type)
    credits = pricing.credits_for(rate, amount_cents, field="amount_cents")
    if credits < 1:
        raise CheckoutRefused(ErrorCode.invalid_command, "amount_cents buys no credits")
    meta = PaymentMetadata(account_id, "amount", credit_type, credits)
    return CheckoutOrder(meta, amount_cents, catalog.currency_of(plan), f"{credits} {credit_type}")


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
