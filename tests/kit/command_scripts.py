"""Random command scripts for the property tests that drive a ledger: a script is a list of
(step, n) pairs, each step a kind of command (or a clock move) and n the number it is made from.

Shared by the read-model test (`tests/projections/test_read_models_equal_the_fold.py`) and the
past-time test (`tests/unit/test_account_at.py`), so both exercise the same commands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.kit.ledger import Ledger

STEPS = (
    "consume",
    "consume_amount",
    "consume_resource",
    "set_resource_limit",
    "reserve",
    "capture",
    "capture_part",
    "extend_hold",
    "release",
    "grant",
    "purchase",
    "revoke",
    "change_plan",
    "top_up",
    "advance_hours",
    "advance_days",
)
ACTIONS = ("generate", "lookup", "cached_lookup", "send_message", "upload")
CREDIT_TYPES = ("credits", "messages", "storage")
PLANS = ("free", "starter", "pro")
RESOURCES = ("qr-1", "qr-2", "qr-3")

# Steps a test adds of its own: (ledger, step, n) → the command's fields, or None to fall back
# on the shared steps.
ExtraFields = Callable[[Ledger, str, int], dict[str, Any] | None]


def play(
    ledger: Ledger,
    script: list[tuple[str, int]],
    account_of: Callable[[int], str],
    extra: ExtraFields | None = None,
) -> None:
    """Sends each step's command (or moves the clock); refusals are part of the script."""
    holds: list[tuple[str, str]] = []
    payments: list[tuple[str, str]] = []
    for index, (step, n) in enumerate(script):
        account = account_of(n)
        if step == "advance_hours":
            ledger.clock.advance(hours=1 + n % 30)
            continue
        if step == "advance_days":
            ledger.clock.advance(days=1 + n % 40)
            continue
        fields = extra(ledger, step, n) if extra is not None else None
        if fields is None:
            fields = script_fields(step, n, index, account, holds, payments)
        if fields is None:
            continue
        command_type = fields.pop("type")
        reply = ledger.send(command_type, account, **fields)
        if reply.status == "accepted" and command_type == "reserve":
            holds.append((account, fields["hold_id"]))
        if reply.status == "accepted" and command_type == "purchase":
            payments.append((account, fields["payment_reference"]))


def script_fields(
    step: str,
    n: int,
    index: int,
    account: str,
    holds: list[tuple[str, str]],
    payments: list[tuple[str, str]],
) -> dict[str, Any] | None:
    mine = [h for a, h in holds if a == account]
    paid = [p for a, p in payments if a == account]
    match step:
        case "consume":
            return {"type": "consume", "action": ACTIONS[n % 5], "quantity": 1 + n % 7}
        case "consume_resource":
            resource = RESOURCES[n % len(RESOURCES)]
            return {"type": "consume", "action": "send_message", "resource": resource}
        case "set_resource_limit":
            limit = None if n % 4 == 0 else n % 25
            resource = RESOURCES[n % len(RESOURCES)]
            return {"type": "set_resource_limit", "resource": resource, "daily_limit": limit}
        case "consume_amount":
            ct = CREDIT_TYPES[n % 3]
            return {"type": "consume", "credit_type": ct, "amount": 1 + n % 60}
        case "reserve":
            hold = f"h{index}"
            return {
                "type": "reserve",
                "hold_id": hold,
                "action": ACTIONS[n % 5],
                "quantity": 1 + n % 4,
                "ttl_seconds": 60 + n * 3,
            }
        case "capture" if mine:
            hold = mine[n % len(mine)]
            return {"type": "capture", "hold_id": hold, **({"amount": n % 3} if n % 2 else {})}
        case "capture_part" if mine:
            hold = mine[n % len(mine)]
            return {"type": "capture", "hold_id": hold, "amount": 1 + n % 3, "final": False}
        case "extend_hold" if mine:
            return {"type": "extend_hold", "hold_id": mine[n % len(mine)], "ttl_seconds": 600}
        case "release" if mine:
            return {"type": "release", "hold_id": mine[n % len(mine)]}
        case "grant":
            return {
                "type": "grant",
                "credit_type": CREDIT_TYPES[n % 3],
                "amount": 1 + n,
                "source": ("promotional", "admin", "trial")[n % 3],
                # What a history row names as the grant's reason (its origin).
                **({"reference": f"ticket-{n}"} if n % 2 else {}),
            }
        case "purchase":
            pack, price = ("credits_1000", 4000) if n % 2 else ("messages_100", 300)
            return {
                "type": "purchase",
                "pack": pack,
                "payment_reference": f"pi_{index}",
                "amount_paid": price,
                "currency": "usd",
            }
        case "revoke" if paid:
            amount = {"amount": 1 + n % 900} if n % 3 == 0 else {}
            return {
                "type": "revoke",
                "payment_reference": paid[n % len(paid)],
                "reason": "refund",
                **amount,
            }
        case "change_plan":
            effective = "now" if n % 4 else "next_period"
            return {"type": "change_plan", "plan": PLANS[n % 3], "effective": effective}
        case "top_up":
            return {"type": "request_top_up", "credit_type": "credits", "amount": 100 + n}
    return None
