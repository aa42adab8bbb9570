"""The payments sent to the ledger, and what became of them: a table in the service's database.

Every Stripe charge must end as credits or a refund. The ledger may refuse a paid purchase (the
plan may no longer buy the pack, the account is unknown, the top-up is no longer pending...),
and only its reply says so. So each purchase the payment consumer sends is recorded here first
(`payments_purchases`, one row per payment reference, i.e. PaymentIntent) and moves through:

    awaiting_reply ─▶ applied                      (accepted or duplicate: credits granted)
          │
          └────────▶ refund_pending ─▶ refunded      (refused: money given back at Stripe)
                            │
                            └────────▶ refund_failed (Stripe refused or stayed down; listed by
                                                      `credits payments unapplied`)

A refused payment is never sent to the ledger again (a purchase the ledger refused is decided
afresh on a retry, and might be accepted after the money went back).

The row also holds how much of the payment's Stripe refunds its revokes cover
(`refunded_cents`, `revoked_credits`: see refunds.py), and `payments_revokes` is the outbox of
those revokes: planned in the same transaction that moves the row, sent, then marked sent. A
crash between planning and sending leaves them unsent, and the next event of that payment (its
redelivery, at the latest) sends them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
from asyncpg.pool import PoolAcquireContext

from infra.schema_lock import creating_schema_asyncpg
from infra.settings import Settings
from services.payments.mapping import Command
from services.payments.pool import acquire_timeout_seconds, close_pool, open_pool
from services.payments.refunds import Refunded, Revoked, refund_revoke, revoke_step

PURCHASES = "payments_purchases"
REVOKES = "payments_revokes"
MAX_LISTED = 1000
MAX_TEXT_CHARS = 1000


class PaymentState(StrEnum):
    AWAITING_REPLY = "awaiting_reply"
    APPLIED = "applied"
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"
    REFUND_FAILED = "refund_failed"


# The ledger refused these: nothing of theirs goes to the ledger again.
REFUSED = frozenset(
    {PaymentState.REFUND_PENDING, PaymentState.REFUNDED, PaymentState.REFUND_FAILED}
)


@dataclass(frozen=True)
class Payment:
    payment_reference: str
    command_id: str
    account_id: str
    command: dict[str, Any]
    state: PaymentState
    refusal_code: str | None
    refusal_message: str | None
    refund_id: str | None
    refund_cents: int | None
    refund_error: str | None
    refunded_at: datetime | None
    sent_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RefundPlan:
    """What a `charge.refunded` leads to: nothing (refused payment) or these revokes to send."""

    state: PaymentState
    revokes: tuple[Command, ...]


_SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS {PURCHASES} (
        payment_reference text PRIMARY KEY,
        command_id text NOT NULL UNIQUE,
        account_id text NOT NULL,
        command jsonb NOT NULL,
        state text NOT NULL,
        refusal_code text,
        refusal_message text,
        refund_id text,
        refund_cents bigint,
        refund_error text,
        refunded_at timestamptz,
        refunded_cents bigint NOT NULL DEFAULT 0,
        revoked_credits bigint NOT NULL DEFAULT 0,
        sent_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now())""",
    f"""CREATE INDEX IF NOT EXISTS payments_purchases_unapplied
        ON {PURCHASES} (sent_at) WHERE state <> 'applied'""",
    f"""CREATE TABLE IF NOT EXISTS {REVOKES} (
        command_id text PRIMARY KEY,
        payment_reference text NOT NULL REFERENCES {PURCHASES},
        command jsonb NOT NULL,
        planned_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        sent_at timestamptz)""",
    f"""CREATE INDEX IF NOT EXISTS payments_revokes_unsent
        ON {REVOKES} (payment_reference) WHERE sent_at IS NULL""",
]
# A new payment's row; `command` is JSON text, cast (asyncpg passes jsonb as text).
_INSERT = (
    f"INSERT INTO {PURCHASES} (payment_reference, command_id, account_id, command, state) "
    "VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (payment_reference) "
)


class PostgresPurchases:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout_seconds: float) -> None:
        self._pool = pool
        self._acquire_timeout_seconds = acquire_timeout_seconds
        # Set by `open`, which borrowed the pool: only then does `close` give it back.
        self._owns_pool = False

    @classmethod
    async def open(cls, settings: Settings) -> PostgresPurchases:
        pool = await open_pool(settings)
        purchases = cls(pool, acquire_timeout_seconds=acquire_timeout_seconds(settings))
        purchases._owns_pool = True
        try:
            await purchases.create_tables()
        except BaseException:
            await close_pool(pool)
            raise
        return purchases

    async def close(self) -> None:
        """Gives back the pool `open` borrowed (one passed in is its lender's to give back)."""
        if self._owns_pool:
            self._owns_pool = False
            await close_pool(self._pool)

    async def expire_connections(self) -> None:
        """Every pooled connection is replaced before its next use: after a restart of the
        server, the pool's idle connections are dead."""
        await self._pool.expire_connections()

    def _connection(self) -> PoolAcquireContext:
        return self._pool.acquire(timeout=self._acquire_timeout_seconds)

    async def create_tables(self) -> None:
        async with self._connection() as conn, creating_schema_asyncpg(conn):
            for statement in _SCHEMA:
                await conn.execute(statement)

    # ------------------------------------------------------------------ purchases sent

    async def record_sent(self, purchase: Command) -> PaymentState:
        """Notes a purchase about to be sent (once per payment); returns the payment's state."""
        async with self._connection() as conn:
            state = await conn.fetchval(
                _INSERT + "DO UPDATE SET sent_at = now() RETURNING state", *_new_row(purchase)
            )
        assert state is not None
        return PaymentState(state)

    async def sendable(self, commands: Sequence[Command]) -> tuple[Command, ...]:
        """`commands` less those of payments the ledger refused; every purchase among them is
        recorded as sent (before it is: a crash after the send finds it awaiting its reply)."""
        refused: set[str] = set()
        for command in commands:
            if command["type"] == "purchase" and await self.record_sent(command) in REFUSED:
                refused.add(command["payment_reference"])
        return tuple(c for c in commands if c.get("payment_reference") not in refused)

    async def plan_refund(self, refunded: Refunded) -> RefundPlan:
        """Moves the payment's revokes to the target of `refunded` (see refunds.py), in one
        transaction on the payment's row, and returns every revoke of it not sent yet."""
        reference = refunded.purchase["payment_reference"]
        async with self._connection() as conn, conn.transaction():
            await conn.execute(_INSERT + "DO NOTHING", *_new_row(refunded.purchase))
            row = await conn.fetchrow(
                f"SELECT state, refunded_cents, revoked_credits FROM {PURCHASES} "
                "WHERE payment_reference = $1 FOR UPDATE",
                reference,
            )
            assert row is not None
            state = PaymentState(row["state"])
            if state in REFUSED:
                return RefundPlan(state, ())
            step = revoke_step(
                Revoked(refunded_cents=row["refunded_cents"], credits=row["revoked_credits"]),
                refunded.refunded_cents,
                refunded.meta.credits,
                refunded.paid_cents,
            )
            if step is not None:
                if step.amount != 0:
                    await _plan_revoke(conn, refund_revoke(refunded, step))
                await conn.execute(
                    f"UPDATE {PURCHASES} SET refunded_cents = $1, revoked_credits = $2, "
                    "updated_at = now() WHERE payment_reference = $3",
                    step.after.refunded_cents,
                    step.after.credits,
                    reference,
                )
            revokes = await _unsent(conn, reference)
        return RefundPlan(state, revokes)

    async def plan_revoke(self, revoke: Command) -> None:
        """A revoke to send once (the outbox): e.g. the credits of a payment refunded already."""
        async with self._connection() as conn:
            await _plan_revoke(conn, revoke)

    async def unsent_revokes(self, payment_reference: str) -> tuple[Command, ...]:
        async with self._connection() as conn:
            return await _unsent(conn, payment_reference)

    async def mark_revokes_sent(self, command_ids: Sequence[str]) -> None:
        if not command_ids:
            return
        async with self._connection() as conn:
            await conn.execute(
                f"UPDATE {REVOKES} SET sent_at = now() "
                "WHERE command_id = ANY($1::text[]) AND sent_at IS NULL",
                list(command_ids),
            )

    # ------------------------------------------------------------------ the ledger's replies

    async def payment_of(self, command_id: str) -> Payment | None:
        return await self._one(f"SELECT * FROM {PURCHASES} WHERE command_id = $1", command_id)

    async def mark_applied(self, command_id: str) -> Payment | None:
        """Credits were granted: `applied` (a failed refund included: the charge has its
        credits after all), unless a refund is under way or done (returned as it is: its
        credits must then be revoked)."""
        return await self._transition(
            "state = 'applied'",
            (),
            command_id,
            (PaymentState.AWAITING_REPLY, PaymentState.REFUND_FAILED),
        )

    async def begin_refund(self, command_id: str, code: str, message: str) -> Payment | None:
        """The ledger refused the purchase: `refund_pending` (from any state but `applied` and
        `refunded`, which are returned unchanged)."""
        return await self._transition(
            "state = 'refund_pending', refusal_code = $1, refusal_message = $2",
            (code[:MAX_TEXT_CHARS], message[:MAX_TEXT_CHARS]),
            command_id,
            (PaymentState.AWAITING_REPLY, PaymentState.REFUND_PENDING, PaymentState.REFUND_FAILED),
        )

    async def mark_refunded(self, command_id: str, refund_id: str, cents: int) -> Payment | None:
        return await self._transition(
            "state = 'refunded', refund_id = $1, refund_cents = $2, refund_error = NULL, "
            "refunded_at = now()",
            (refund_id, cents),
            command_id,
            (PaymentState.REFUND_PENDING,),
        )

    async def mark_refund_failed(self, command_id: str, error: str) -> Payment | None:
        return await self._transition(
            "state = 'refund_failed', refund_error = $1",
            (error[:MAX_TEXT_CHARS],),
            command_id,
            (PaymentState.REFUND_PENDING,),
        )

    async def unapplied(
        self, states: Sequence[PaymentState] | None = None, limit: int = 100
    ) -> list[Payment]:
        """Payments without credits: refused (refunded or not) and those still awaiting the
        ledger's reply, oldest first."""
        wanted = [s.value for s in (states or [s for s in PaymentState if s != "applied"])]
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT * FROM {PURCHASES} WHERE state = ANY($1::text[]) "
                "ORDER BY sent_at LIMIT $2",
                wanted,
                max(1, min(limit, MAX_LISTED)),
            )
        return [_payment(row) for row in rows]

    # ------------------------------------------------------------------ helpers

    async def _transition(
        self,
        assignments: str,
        values: tuple[Any, ...],
        command_id: str,
        from_states: tuple[PaymentState, ...],
    ) -> Payment | None:
        """The row after the change, or as it is when its state is not one of `from_states`;
        None when there is no such payment. `assignments` numbers its parameters from $1, one
        per value."""
        n = len(values)
        changed = await self._one(
            f"UPDATE {PURCHASES} SET {assignments}, updated_at = now() "
            f"WHERE command_id = ${n + 1} AND state = ANY(${n + 2}::text[]) RETURNING *",
            *values,
            command_id,
            [s.value for s in from_states],
        )
        return changed if changed is not None else await self.payment_of(command_id)

    async def _one(self, query: str, *values: Any) -> Payment | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(query, *values)
        return None if row is None else _payment(row)


async def _plan_revoke(conn: asyncpg.Connection, revoke: Command) -> None:
    await conn.execute(
        f"INSERT INTO {REVOKES} (command_id, payment_reference, command) "
        "VALUES ($1, $2, $3::jsonb) ON CONFLICT (command_id) DO NOTHING",
        revoke["command_id"],
        revoke["payment_reference"],
        json.dumps(revoke),
    )


async def _unsent(conn: asyncpg.Connection, payment_reference: str) -> tuple[Command, ...]:
    rows = await conn.fetch(
        f"SELECT command FROM {REVOKES} WHERE payment_reference = $1 AND sent_at IS NULL "
        "ORDER BY planned_at, command_id",
        payment_reference,
    )
    return tuple(json.loads(row["command"]) for row in rows)


def _new_row(purchase: Command) -> tuple[Any, ...]:
    return (
        purchase["payment_reference"],
        purchase["command_id"],
        purchase["account_id"],
        json.dumps(purchase),
        PaymentState.AWAITING_REPLY.value,
    )


def _payment(row: asyncpg.Record) -> Payment:
    return Payment(
        payment_reference=row["payment_reference"],
        command_id=row["command_id"],
        account_id=row["account_id"],
        command=json.loads(row["command"]),
        state=PaymentState(row["state"]),
        refusal_code=row["refusal_code"],
        refusal_message=row["refusal_message"],
        refund_id=row["refund_id"],
        refund_cents=row["refund_cents"],
        refund_error=row["refund_error"],
        refunded_at=row["refunded_at"],
        sent_at=row["sent_at"],
        updated_at=row["updated_at"],
    )
