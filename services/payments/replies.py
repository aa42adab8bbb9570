"""The ledger's replies to the payment consumer's commands: every charge ends as credits or a
refund.

The consumer sends its commands with `reply_to` = the payments reply topic and `correlation_id`
= the command id, and reads that topic in its own consumer group (no reply is lost across a
restart). For a purchase (see purchases.py for the states):
- accepted or duplicate → `applied`. So is `idempotency_conflict`: the ledger holds a receipt
  for that command id, so the payment was granted (with another payload);
- any other rejection (not_eligible, unknown_account, a price that no longer matches, a top-up
  no longer pending, invalid_command...) → the payment is refunded at Stripe, with the
  idempotency key `credits-refund:<payment reference>`: a redelivered reply, or a purchase
  sent twice and refused twice, refunds once. Then `credits.payment_refunded` is published
  (every time: consumers dedupe by its id) and counted. A refund Stripe refuses, or that stays
  failing after the bounded retries, leaves the payment `refund_failed` (listed by
  `credits payments unapplied`), and the latter goes to the DLQ as `retries_exhausted` too;
- granted while refunded (an earlier copy of the purchase, in flight when the refusal came,
  was accepted after all) → the lot is revoked, once, so the refund stands alone.
Replies to other commands (revokes, renewals...) are counted by type and status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import stripe
import structlog
from pydantic import ValidationError

from domain.errors import ErrorCode
from domain.replies import Reply
from infra.dlq import DlqCode
from services.payments import metrics
from services.payments.errors import BadInput
from services.payments.mapping import Command, Outcome
from services.payments.metadata import ACCOUNT_ID
from services.payments.payment_events import payment_refunded
from services.payments.purchases import Payment, PaymentState, PostgresPurchases
from services.payments.stripe_api import StripeApi
from services.payments.stripe_objects import readable

log = structlog.get_logger("credits.payments")

# Runs a Stripe call with the consumer's bounded retries (RetriesExhausted past them).
StripeRetry = Callable[[Callable[[], Awaitable[dict[str, Any]]]], Awaitable[dict[str, Any]]]
GRANTED = frozenset({"accepted", "duplicate"})


def parse_reply(message: dict[str, Any]) -> Reply:
    try:
        return Reply.model_validate(message)
    except ValidationError as error:
        raise BadInput(DlqCode.INVALID_REPLY, _first_problem(error)) from None


def refund_key(payment_reference: str) -> str:
    return f"credits-refund:{payment_reference}"


class ReplyHandler:
    def __init__(
        self, api: StripeApi, purchases: PostgresPurchases, stripe_retry: StripeRetry
    ) -> None:
        self.api = api
        self.purchases = purchases
        self.stripe_retry = stripe_retry

    async def reply(self, reply: Reply) -> Outcome:
        payment = await self.purchases.payment_of(reply.command_id)
        command = "purchase" if payment is not None else _command_type(reply.command_id)
        metrics.REPLIES.labels(command=command, status=reply.status).inc()
        if payment is None:
            if reply.status == "rejected":
                log.warning(
                    "the ledger refused a payment command",
                    command_id=reply.command_id,
                    code=reply.error.code if reply.error else None,
                )
            return Outcome(note=f"{command}_{reply.status}")
        if reply.status in GRANTED or _granted_before(reply):
            return await self._granted(reply)
        assert reply.error is not None
        return await self._refused(payment, reply.error.code.value, reply.error.message)

    async def _granted(self, reply: Reply) -> Outcome:
        payment = await self.purchases.mark_applied(reply.command_id)
        assert payment is not None
        if payment.state not in (PaymentState.REFUND_PENDING, PaymentState.REFUNDED):
            return Outcome(note="applied")
        # Refunded, and granted by a copy of the purchase: take the credits back.
        revoke: Command = {
            "type": "revoke",
            "command_id": f"stripe:{payment.payment_reference}:refunded:revoke",
            "account_id": payment.account_id,
            "payment_reference": payment.payment_reference,
            "reason": "refund",
        }
        log.warning("a refunded payment was granted: revoking", command_id=reply.command_id)
        await self.purchases.plan_revoke(revoke)
        unsent = await self.purchases.unsent_revokes(payment.payment_reference)
        return Outcome(commands=unsent, note="granted_after_refund")

    async def _refused(self, payment: Payment, code: str, message: str) -> Outcome:
        started = await self.purchases.begin_refund(payment.command_id, code, message)
        assert started is not None
        if started.state == PaymentState.APPLIED:
            log.warning("a granted payment's purchase was refused again", code=code)
            return Outcome(note="applied")
        if started.state == PaymentState.REFUND_PENDING:
            started = await self._refund(started)
        if started.state != PaymentState.REFUNDED:
            return Outcome(note="refund_failed")
        return Outcome(events=(payment_refunded(started),), note="refunded")

    async def _refund(self, payment: Payment) -> Payment:
        metadata = {
            ACCOUNT_ID: payment.account_id,
            "credits_refusal": (payment.refusal_code or "")[:100],
        }
        key = refund_key(payment.payment_reference)
        try:
            refund = await self.stripe_retry(
                lambda: self.api.refund(payment.payment_reference, metadata, key)
            )
        except BadInput as exhausted:  # retries exhausted: failed now, the record to the DLQ
            await self._failed(payment, exhausted.message)
            raise
        except stripe.StripeError as error:
            return await self._failed(payment, f"{type(error).__name__}: {error.user_message}")
        refund_id, cents = refund.get("id"), refund.get("amount")
        if not isinstance(refund_id, str) or not isinstance(cents, int):
            return await self._failed(payment, "Stripe answered a refund without id or amount")
        done = await self.purchases.mark_refunded(payment.command_id, refund_id, cents)
        assert done is not None
        if done.state == PaymentState.REFUNDED and done.refund_id == refund_id:
            metrics.REFUNDS.labels(outcome="refunded", code=_code(payment)).inc()
            log.info(
                "refused payment refunded",
                payment_reference=payment.payment_reference,
                account_id=payment.account_id,
                refusal=payment.refusal_code,
                refund_id=refund_id,
                refund_cents=cents,
            )
        return done

    async def _failed(self, payment: Payment, error: str) -> Payment:
        failed = await self.purchases.mark_refund_failed(payment.command_id, readable(error, 500))
        assert failed is not None
        metrics.REFUNDS.labels(outcome="refund_failed", code=_code(payment)).inc()
        log.error(
            "refused payment not refunded",
            payment_reference=payment.payment_reference,
            account_id=payment.account_id,
            error=error,
        )
        return failed


def _granted_before(reply: Reply) -> bool:
    # The ledger holds a receipt for the command id: granted, with another payload.
    return reply.error is not None and reply.error.code == ErrorCode.idempotency_conflict


def _command_type(command_id: str) -> str:
    if ":refunded:" in command_id:
        return "revoke"
    kind = command_id.rsplit(":", 1)[-1]
    return kind if kind in ("revoke", "renew", "change_plan", "fail_top_up") else "other"


def _code(payment: Payment) -> str:
    return metrics.label(payment.refusal_code or "unknown")


def _first_problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "<reply>"
    return f"not a reply: {where}: {first['msg']}"[:500]
