"""Stripe events → ledger commands (DESIGN §2.2): pure functions, no I/O.

Every command id is derived from Stripe ids, so a webhook delivered twice, or a later event
that implies the same fact, produces the very same command, and the ledger's receipts apply it
once (a retry answers `duplicate`). The ids:

| command | command_id | from |
| --- | --- | --- |
| `purchase` | `stripe:<payment_intent>:purchase` | session paid, intent succeeded, before revokes |
| `fail_top_up` | `stripe:<payment_intent>:fail_top_up` | payment intent failed (top-ups) |
| `revoke` | `stripe:<refund or dispute>:revoke` | each refund object; each dispute |
| `renew` | `stripe:<invoice>:renew` | invoice paid for a subscription cycle |
| `change_plan` | `stripe:<event>:change_plan` | subscription updated or deleted |

The payment reference of a purchase is its PaymentIntent id: refunds and disputes name the
same PaymentIntent, so they find the lot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infra.dlq import DlqCode
from services.payments import metadata as md
from services.payments.errors import BadInput
from services.payments.metadata import PaymentMetadata
from services.payments.stripe_objects import cents, currency, id_of, mapping, readable, text

Command = dict[str, Any]

# A subscription in these states pays; in the ending ones the account goes to the cancel plan.
# Other states (past_due, incomplete, paused) change nothing until Stripe settles them.
_PAYING = frozenset({"active", "trialing"})
_ENDED = frozenset({"canceled", "unpaid", "incomplete_expired"})


@dataclass(frozen=True)
class Outcome:
    """What one record asks for: commands, integration events (CloudEvents for credits.events),
    a customer link, or nothing and why."""

    commands: tuple[Command, ...] = ()
    events: tuple[dict[str, Any], ...] = ()
    link: tuple[str, str] | None = None  # (account id, Stripe customer id)
    unlink: str | None = None  # a deleted Stripe customer id
    note: str | None = None  # why there are no commands (for logs and counters)


def purchase_command(
    meta: PaymentMetadata, payment_intent_id: str, amount_paid_cents: int, currency_code: str
) -> Command:
    command: Command = {
        "type": "purchase",
        "command_id": f"stripe:{payment_intent_id}:purchase",
        "account_id": meta.account_id,
        "payment_reference": payment_intent_id,
        "amount_paid": amount_paid_cents,
        "currency": currency_code,
    }
    if meta.kind == "pack":
        command["pack"] = meta.pack
    else:
        command["credit_type"] = meta.credit_type
        command["amount"] = meta.credits
    if meta.kind == "top_up":
        command["top_up_id"] = meta.top_up_id
    return command


def purchase_from_payment_intent(payment_intent: Mapping[str, Any]) -> Command | None:
    """The purchase a PaymentIntent of ours stands for (None when it is not ours)."""
    meta = md.payment_metadata(payment_intent.get("metadata"))
    if meta is None:
        return None
    return purchase_command(
        meta, text(payment_intent, "id"), cents(payment_intent, "amount"), currency(payment_intent)
    )


def checkout_session_paid(session: Mapping[str, Any]) -> Outcome:
    """`checkout.session.completed` (when paid) and `.async_payment_succeeded` → purchase."""
    meta = md.payment_metadata(session.get("metadata"))
    customer = id_of(session.get("customer"))
    if meta is None:
        return Outcome(note="not_ours")
    link = (meta.account_id, customer) if customer else None
    if session.get("mode") != "payment":
        return Outcome(link=link, note="not_a_payment")
    if session.get("payment_status") != "paid":
        # An asynchronous method (bank debit): `async_payment_succeeded` comes later.
        return Outcome(link=link, note="not_paid_yet")
    reference = id_of(session.get("payment_intent")) or text(session, "id")
    command = purchase_command(meta, reference, cents(session, "amount_total"), currency(session))
    return Outcome(commands=(command,), link=link)


def payment_intent_succeeded(payment_intent: Mapping[str, Any]) -> Outcome:
    """Top-ups (and the PaymentIntent behind a Checkout Session: the same command) → purchase."""
    command = purchase_from_payment_intent(payment_intent)
    if command is None:
        return Outcome(note="not_ours")
    return Outcome(commands=(command,))


def top_up_of(payment_intent: Mapping[str, Any]) -> PaymentMetadata | None:
    meta = md.payment_metadata(payment_intent.get("metadata"))
    return meta if meta is not None and meta.kind == "top_up" else None


def payment_intent_failed(payment_intent: Mapping[str, Any], recovery_url: str | None) -> Outcome:
    """A top-up charge failed → `fail_top_up` with where to pay by hand. Others: nothing."""
    meta = top_up_of(payment_intent)
    if meta is None:
        return Outcome(note="not_a_top_up")
    command: Command = {
        "type": "fail_top_up",
        "command_id": f"stripe:{text(payment_intent, 'id')}:fail_top_up",
        "account_id": meta.account_id,
        "top_up_id": meta.top_up_id,
        "reason": failure_reason(payment_intent.get("last_payment_error")),
    }
    if recovery_url is not None:
        command["recovery_url"] = recovery_url
    return Outcome(commands=(command,))


def failure_reason(error: Any) -> str:
    if not isinstance(error, Mapping):
        return "payment_failed"
    code = error.get("decline_code") or error.get("code") or "payment_failed"
    code = readable(code, 64) if isinstance(code, str) else "payment_failed"
    message = error.get("message")
    reason = f"{code}: {message}" if isinstance(message, str) and message else code
    return readable(reason, 256)


def invoice_paid(invoice: Mapping[str, Any]) -> Outcome:
    """A paid subscription cycle → `renew` of the period it starts (idempotent per period)."""
    if invoice.get("billing_reason") != "subscription_cycle":
        return Outcome(note="not_a_cycle")
    account_id = md.account_of(_subscription_metadata(invoice))
    if account_id is None:
        return Outcome(note="not_ours")
    command: Command = {
        "type": "renew",
        "command_id": f"stripe:{text(invoice, 'id')}:renew",
        "account_id": account_id,
        "period_id": _day(_period_start(invoice)),
    }
    return Outcome(commands=(command,))


def subscription_changed(
    event_id: str, subscription: Mapping[str, Any], *, deleted: bool, cancel_plan: str
) -> Outcome:
    """`customer.subscription.updated` / `.deleted` → `change_plan` (now).

    The plan is the subscription's `credits_plan` metadata (else its first price's). An ended
    subscription moves the account to the cancel plan; purchased credits stay (the domain's
    rule). The command id is the event's: each change is its own command.
    """
    account_id = md.account_of(subscription.get("metadata"))
    if account_id is None:
        return Outcome(note="not_ours")
    # Any JSON value may come here: only text is looked up (a list is not hashable).
    status = subscription.get("status")
    status = status if isinstance(status, str) else None
    if deleted or status in _ENDED:
        plan = cancel_plan
    elif status in _PAYING:
        plan = md.name(_plan_of(subscription), md.PLAN)
    else:
        return Outcome(note=f"status_{status}")
    command: Command = {
        "type": "change_plan",
        "command_id": f"stripe:{event_id}:change_plan",
        "account_id": account_id,
        "plan": plan,
        "effective": "now",
    }
    return Outcome(commands=(command,))


def customer_changed(customer: Mapping[str, Any], *, deleted: bool) -> Outcome:
    """Customers carry `credits_account_id`: that is how a top-up finds the saved card."""
    customer_id = text(customer, "id")
    if deleted:
        return Outcome(unlink=customer_id)
    account_id = md.account_of(customer.get("metadata"))
    if account_id is None:
        return Outcome(note="not_ours")
    return Outcome(link=(account_id, customer_id))


def _subscription_metadata(invoice: Mapping[str, Any]) -> Mapping[str, Any] | None:
    # API 2025-03-31 moved it under `parent`; older versions have `subscription_details`.
    parent = invoice.get("parent")
    for holder in (
        parent.get("subscription_details") if isinstance(parent, Mapping) else None,
        invoice.get("subscription_details"),
    ):
        if isinstance(holder, Mapping) and isinstance(holder.get("metadata"), Mapping):
            return holder["metadata"]
    metadata = invoice.get("metadata")
    return metadata if isinstance(metadata, Mapping) else None


def _period_start(invoice: Mapping[str, Any]) -> int:
    """The start of the period the invoice pays for: its subscription line's period.

    (`invoice.period_start` of a subscription invoice is the *previous* period; its
    `period_end` is where the new one starts, used when there are no lines.)
    """
    lines = invoice.get("lines")
    data = lines.get("data") if isinstance(lines, Mapping) else None
    if isinstance(data, list) and data:
        period = mapping(data[0], "lines.data.0").get("period")
        if isinstance(period, Mapping):
            return _timestamp(period, "start")
    return _timestamp(invoice, "period_end")


def _timestamp(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 10**11:
        raise BadInput(DlqCode.INVALID_STRIPE_EVENT, f"{key}: not a Unix time")
    return value


def _day(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()


def _plan_of(subscription: Mapping[str, Any]) -> Any:
    plan = md.of(subscription.get("metadata")).get(md.PLAN)
    if plan is not None:
        return plan
    items = subscription.get("items")
    data = items.get("data") if isinstance(items, Mapping) else None
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        price = data[0].get("price")
        if isinstance(price, Mapping):
            return md.of(price.get("metadata")).get(md.PLAN)
    return None
