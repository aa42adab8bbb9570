"""Which Stripe customer pays for which account: a small table, filled from Stripe events.

A top-up must charge the account's saved card, so the payment side needs account → customer.
Stripe's customer search is eventually consistent (up to a minute behind), so the link is kept
here instead, in PostgreSQL: written when a Stripe customer with `credits_account_id` metadata
is created or updated, and when a Checkout Session of ours completes with a customer (Checkout
creates one); removed when the customer is deleted. The latest link wins.
"""

from __future__ import annotations

from typing import Protocol

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from infra.settings import Settings

TABLE = "payments_stripe_customers"
POOL_MAX_SIZE = 2


class Customers(Protocol):
    async def customer_of(self, account_id: str) -> str | None: ...

    async def link(self, account_id: str, customer_id: str) -> None: ...

    async def unlink(self, customer_id: str) -> None: ...


class PostgresCustomers:
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection]) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, settings: Settings) -> PostgresCustomers:
        pool: AsyncConnectionPool[AsyncConnection] = AsyncConnectionPool(
            settings.pg_dsn(),
            min_size=1,
            max_size=POOL_MAX_SIZE,
            timeout=settings.pg_connect_timeout_seconds,
            kwargs={"autocommit": True},
            open=False,
        )
        await pool.open(wait=True, timeout=settings.pg_connect_timeout_seconds)
        customers = cls(pool)
        await customers.create_table()
        return customers

    async def close(self) -> None:
        await self._pool.close()

    async def create_table(self) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    "account_id text PRIMARY KEY, "
                    "customer_id text NOT NULL, "
                    "linked_at timestamptz NOT NULL DEFAULT now())"
                ).format(sql.Identifier(TABLE))
            )

    async def customer_of(self, account_id: str) -> str | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                sql.SQL("SELECT customer_id FROM {} WHERE account_id = %s").format(
                    sql.Identifier(TABLE)
                ),
                (account_id,),
            )
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def link(self, account_id: str, customer_id: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {} (account_id, customer_id) VALUES (%s, %s) "
                    "ON CONFLICT (account_id) DO UPDATE "
                    "SET customer_id = EXCLUDED.customer_id, linked_at = now()"
                ).format(sql.Identifier(TABLE)),
                (account_id, customer_id),
            )

    async def unlink(self, customer_id: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE customer_id = %s").format(sql.Identifier(TABLE)),
                (customer_id,),
            )
