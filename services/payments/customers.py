"""Which Stripe customer pays for which account: a small table, filled from Stripe events.

A top-up must charge the account's saved card, so the payment side needs account → customer.
Stripe's customer search is eventually consistent (up to a minute behind), so the link is kept
here instead, in PostgreSQL: written when a Stripe customer with `credits_account_id` metadata
is created or updated, and when a Checkout Session of ours completes with a customer (Checkout
creates one when it was not given one); removed when the customer is deleted. The latest link
wins. Checkout passes the linked customer, and creates (and links) one only for the account's
first payment (`checkout_customer`), so an account keeps one customer and its saved cards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import psycopg
import stripe
import structlog
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from infra.schema_lock import creating_schema_psycopg
from infra.settings import Settings
from services.payments.pool import open_pool
from services.payments.stripe_api import StripeApi

log = structlog.get_logger("credits.payments")

TABLE = "payments_stripe_customers"


class Customers(Protocol):
    async def customer_of(self, account_id: str) -> str | None: ...

    async def link(self, account_id: str, customer_id: str) -> None: ...

    async def unlink(self, customer_id: str) -> None: ...


class PostgresCustomers:
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection]) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, settings: Settings) -> PostgresCustomers:
        pool = await open_pool(settings)
        customers = cls(pool)
        try:
            await customers.create_table()
        except BaseException:
            await pool.close()
            raise
        return customers

    async def close(self) -> None:
        await self._pool.close()

    async def create_table(self) -> None:
        async with self._pool.connection() as conn, creating_schema_psycopg(conn):
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


async def checkout_customer(api: StripeApi, customers: Customers, account_id: str) -> str | None:
    """The Stripe customer a Checkout Session of the account charges: the linked one, else a
    new one, created now (with `credits_account_id` metadata and an idempotency key per
    account, so two first checkouts at once get the same one) and linked at once, so every
    later checkout and top-up uses it. None when Stripe or PostgreSQL cannot answer now:
    Checkout then creates a customer, which the completed session links."""
    try:
        linked = await customers.customer_of(account_id)
        if linked is not None:
            return linked
        created = await api.create_customer(account_id, f"credits-customer:{account_id}")
        await customers.link(account_id, created)
    except (stripe.StripeError, psycopg.Error) as error:
        log.warning("no customer for checkout", account_id=account_id, error=str(error))
        return None
    log.info("customer created for checkout", account_id=account_id, customer_id=created)
    return created


def checkout_customer_of(
    settings: Settings, client: stripe.StripeClient
) -> Callable[[str], Awaitable[str | None]]:
    """`checkout_customer` for the HTTP routes, its table opened on first use."""
    api = StripeApi(client)
    opened: list[PostgresCustomers] = []
    opening = asyncio.Lock()

    async def customer_of(account_id: str) -> str | None:
        async with opening:
            if not opened:
                try:
                    opened.append(await PostgresCustomers.open(settings))
                except psycopg.Error as error:
                    log.warning("no customer table for checkout", error=str(error))
                    return None
        return await checkout_customer(api, opened[0], account_id)

    return customer_of
