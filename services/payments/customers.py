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

import asyncpg
import stripe
import structlog
from asyncpg.pool import PoolAcquireContext

from infra.outages import ASYNCPG_OUTAGE
from infra.schema_lock import creating_schema_asyncpg
from infra.settings import Settings
from services.payments.pool import PoolOf, acquire_timeout_seconds, close_pool, open_pool
from services.payments.stripe_api import StripeApi

log = structlog.get_logger("credits.payments")

TABLE = "payments_stripe_customers"
# What a lookup for checkout gives up on (Checkout then creates a customer): PostgreSQL away or
# refusing the statement.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, *ASYNCPG_OUTAGE)
UNANSWERED: tuple[type[BaseException], ...] = (stripe.StripeError, *DATABASE_ERRORS)


class Customers(Protocol):
    async def customer_of(self, account_id: str) -> str | None: ...

    async def link(self, account_id: str, customer_id: str) -> None: ...

    async def unlink(self, customer_id: str) -> None: ...


class PostgresCustomers:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout_seconds: float) -> None:
        self._pool = pool
        self._acquire_timeout_seconds = acquire_timeout_seconds
        # Set by `open`, which borrowed the pool: only then does `close` give it back.
        self._owns_pool = False

    @classmethod
    async def open(cls, settings: Settings) -> PostgresCustomers:
        pool = await open_pool(settings)
        customers = cls(pool, acquire_timeout_seconds=acquire_timeout_seconds(settings))
        customers._owns_pool = True
        try:
            await customers.create_table()
        except BaseException:
            await close_pool(pool)
            raise
        return customers

    async def close(self) -> None:
        """Gives back the pool `open` borrowed (one passed in is its lender's to give back)."""
        if self._owns_pool:
            self._owns_pool = False
            await close_pool(self._pool)

    def _connection(self) -> PoolAcquireContext:
        return self._pool.acquire(timeout=self._acquire_timeout_seconds)

    async def create_table(self) -> None:
        async with self._connection() as conn, creating_schema_asyncpg(conn):
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                "account_id text PRIMARY KEY, "
                "customer_id text NOT NULL, "
                "linked_at timestamptz NOT NULL DEFAULT now())"
            )

    async def customer_of(self, account_id: str) -> str | None:
        async with self._connection() as conn:
            customer_id = await conn.fetchval(
                f"SELECT customer_id FROM {TABLE} WHERE account_id = $1", account_id
            )
        return None if customer_id is None else str(customer_id)

    async def link(self, account_id: str, customer_id: str) -> None:
        async with self._connection() as conn:
            await conn.execute(
                f"INSERT INTO {TABLE} (account_id, customer_id) VALUES ($1, $2) "
                "ON CONFLICT (account_id) DO UPDATE "
                "SET customer_id = EXCLUDED.customer_id, linked_at = now()",
                account_id,
                customer_id,
            )

    async def unlink(self, customer_id: str) -> None:
        async with self._connection() as conn:
            await conn.execute(f"DELETE FROM {TABLE} WHERE customer_id = $1", customer_id)


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
    except UNANSWERED as error:
        log.warning("no customer for checkout", account_id=account_id, error=str(error))
        return None
    log.info("customer created for checkout", account_id=account_id, customer_id=created)
    return created


def checkout_customer_of(
    pool_of: PoolOf, client: stripe.StripeClient, *, acquire_timeout_seconds: float
) -> Callable[[str], Awaitable[str | None]]:
    """`checkout_customer` for the HTTP routes, on the routes' pool, its table created on first
    use."""
    api = StripeApi(client)
    ready: list[PostgresCustomers] = []
    creating = asyncio.Lock()

    async def customer_of(account_id: str) -> str | None:
        async with creating:
            if not ready:
                try:
                    customers = PostgresCustomers(
                        await pool_of(), acquire_timeout_seconds=acquire_timeout_seconds
                    )
                    await customers.create_table()
                except DATABASE_ERRORS as error:
                    log.warning("no customer table for checkout", error=str(error))
                    return None
                ready.append(customers)
        return await checkout_customer(api, ready[0], account_id)

    return customer_of
