"""The scenario `credits demo` drives through Kafka: one user's life on the demo catalog.

Each step is a command a product would send, with the answer the ledger must give, so the demo
doubles as a smoke test of a running ledger (`credits run ledger` with
`domain/catalogs/demo.toml`, the default catalog). It is one client call per step, like any
producer service (services/client).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from credits_client.client import CreditsClient

from domain.replies import Reply

DEMO_CATALOG_VERSION = "demo-1"


@dataclass(frozen=True)
class Step:
    says: str  # what the user or the product did, as a sentence
    command: dict[str, Any]  # the command without its account_id and command_id
    status: str  # the reply's status the ledger must answer
    error_code: str | None = None
    # Sends the command_id of an earlier step (by index) again: a retry.
    retry_of: int | None = None


@dataclass
class Outcome:
    step: Step
    reply: Reply

    @property
    def as_expected(self) -> bool:
        code = self.reply.error.code if self.reply.error is not None else None
        return (self.reply.status, code) == (self.step.status, self.step.error_code)

    @property
    def credits_available(self) -> int | None:
        balance = self.reply.balances.get("credits")
        return None if balance is None else balance.available


SCENARIO: list[Step] = [
    Step(
        "signs up on Free: 10 credits a day and 25 trial credits",
        {"type": "open_account", "plan": "free"},
        "accepted",
    ),
    Step("looks something up (1 credit)", {"type": "consume", "action": "lookup"}, "accepted"),
    Step("generates an answer (2 credits)", {"type": "consume", "action": "generate"}, "accepted"),
    Step(
        "repeats 3 lookups answered from cache: free, but counted",
        {"type": "consume", "action": "cached_lookup", "quantity": 3},
        "accepted",
    ),
    Step(
        "tries to buy 100 credits for $5 on Free: credits are sold from Starter up",
        {
            "type": "purchase",
            "credit_type": "credits",
            "amount_paid": 500,
            "currency": "usd",
            "payment_reference": "demo-payment-free",
        },
        "rejected",
        "not_eligible",
    ),
    Step("upgrades to Starter", {"type": "change_plan", "plan": "starter"}, "accepted"),
    Step(
        "buys 100 credits for $5",
        {
            "type": "purchase",
            "credit_type": "credits",
            "amount_paid": 500,
            "currency": "usd",
            "payment_reference": "demo-payment-1",
        },
        "accepted",
    ),
    Step(
        "reserves 10 credits before a long generation",
        {
            "type": "reserve",
            "hold_id": "demo-hold-1",
            "credit_type": "credits",
            "amount": 10,
            "ttl_seconds": 600,
        },
        "accepted",
    ),
    Step(
        "the generation used 6: 6 are captured, 4 go back",
        {"type": "capture", "hold_id": "demo-hold-1", "amount": 6},
        "accepted",
    ),
    Step(
        "tries to spend 100,000 credits",
        {"type": "consume", "credit_type": "credits", "amount": 100_000},
        "rejected",
        "insufficient_credits",
    ),
    Step(
        "the $5 payment is refunded: its credits are revoked",
        {"type": "revoke", "reason": "refund", "payment_reference": "demo-payment-1"},
        "accepted",
    ),
    Step(
        "the first lookup is sent again (a retry): answered, not applied twice",
        {"type": "consume", "action": "lookup"},
        "duplicate",
        retry_of=1,
    ),
]


@dataclass
class DemoRun:
    account_id: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def as_expected(self) -> bool:
        return len(self.outcomes) == len(SCENARIO) and all(o.as_expected for o in self.outcomes)


async def run_demo(
    client: CreditsClient, account_id: str, *, on_step: Callable[[Outcome], None] | None = None
) -> DemoRun:
    """Sends every step in order; stops at the first answer that is not the expected one."""
    run = DemoRun(account_id)
    command_ids = [f"{account_id}-step-{n}" for n in range(len(SCENARIO))]
    for n, step in enumerate(SCENARIO):
        command_id = command_ids[n if step.retry_of is None else step.retry_of]
        reply = await client.send(
            {**step.command, "account_id": account_id, "command_id": command_id}
        )
        outcome = Outcome(step, reply)
        run.outcomes.append(outcome)
        if on_step is not None:
            on_step(outcome)
        if not outcome.as_expected:
            break
    return run
