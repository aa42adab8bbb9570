"""`CreditsClient`: the ledger's commands over Kafka for producer services (docs/CLIENT.md).

    async with CreditsClient(KafkaSettings(), client_id="checkout-1") as credits:
        reply = await credits.consume("acct-42", action="generate", command_id=request_id)
        if reply.status == "rejected":
            ...  # reply.error.code: insufficient_credits, daily_limit_reached, ...

Every call validates the command locally (the ledger's own models), produces it to
`credits.commands` keyed by account id, and returns the ledger's `Reply`, or raises
`CommandTimeout` after `timeout_seconds`. Pass your own `command_id` (e.g. your request id) to
make retries safe: the ledger applies a `command_id` once and answers retries `duplicate`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from credits_client.balances import LastKnownBalances
from credits_client.connection import KafkaSettings, Topic
from credits_client.errors import CommandNotSent, CommandTimeout, InvalidCommand, InvalidReply
from credits_client.partitioning import account_key
from credits_client.transport import KafkaTransport, NotAcknowledged, TransportStats
from domain.commands import Command, parse_command
from domain.errors import LedgerError
from domain.replies import Balance, Reply

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_IN_FLIGHT = 1000
DEFAULT_MAX_CACHED_ACCOUNTS = 10_000
# Longer than any sensible call timeout; replies older than that have no reader left.
DEFAULT_REPLY_RETENTION_SECONDS = 3600
DEFAULT_START_TIMEOUT_SECONDS = 30.0
# Part of a topic name (`<replies topic>.<client_id>`): Kafka's characters, room for a prefix.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class CreditsClient:
    def __init__(
        self,
        settings: KafkaSettings | None = None,
        *,
        client_id: str,
        reply_topic: str | None = None,
        create_reply_topic: bool = True,
        delete_reply_topic_on_stop: bool = False,
        reply_retention_seconds: int = DEFAULT_REPLY_RETENTION_SECONDS,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_cached_accounts: int = DEFAULT_MAX_CACHED_ACCOUNTS,
        start_timeout_seconds: float = DEFAULT_START_TIMEOUT_SECONDS,
    ) -> None:
        """`settings`: where the brokers are and how to log in (`KafkaSettings`, from the
        `CREDITS_KAFKA_*` and `CREDITS_TOPIC_*` variables by default; the service's `Settings`
        is one too). `client_id` names this instance; keep it stable across restarts (a pod or host
        name) so that a restart reuses its reply topic `<credits.replies>.<client_id>`.
        `reply_topic` overrides that name, e.g. with the shared `credits.replies` (then pass
        `create_reply_topic=False`; every client then reads every reply: see docs/CLIENT.md)."""
        if not _CLIENT_ID.match(client_id):
            raise ValueError(f"client_id must match {_CLIENT_ID.pattern}")
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        settings = settings or KafkaSettings()
        self.timeout_seconds = timeout_seconds
        self._balances = LastKnownBalances(max_cached_accounts)
        self._transport = KafkaTransport(
            settings,
            client_id=client_id,
            commands_topic=settings.topic(Topic.COMMANDS),
            reply_topic=reply_topic or f"{settings.topic(Topic.REPLIES)}.{client_id}",
            create_reply_topic=create_reply_topic,
            delete_reply_topic_on_stop=delete_reply_topic_on_stop,
            reply_retention_seconds=reply_retention_seconds,
            max_in_flight=max_in_flight,
            start_timeout_seconds=start_timeout_seconds,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self._transport.start()

    async def stop(self) -> None:
        """Fails the calls still waiting with `ClientClosed`, then closes the connections."""
        await self._transport.stop()

    async def __aenter__(self) -> CreditsClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def reply_topic(self) -> str:
        return self._transport.reply_topic

    @property
    def in_flight(self) -> int:
        return self._transport.in_flight

    @property
    def stats(self) -> TransportStats:
        return self._transport.stats

    # ------------------------------------------------------------------ any command

    async def send(
        self,
        command: Mapping[str, Any] | Command,
        *,
        timeout_seconds: float | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> Reply:
        """Sends one command (DESIGN §2.2, docs/DOMAIN.md) and returns the ledger's reply.

        `headers` go with the command besides the client's own (e.g. a W3C `traceparent`: the
        ledger continues that trace in its reply's headers and the events' CloudEvents).

        Raises `InvalidCommand` before sending if the ledger would refuse it as invalid,
        `CommandTimeout` if no reply came in time (`CommandNotSent`, a kind of it, if not even
        the brokers' acknowledgement came), `ClientClosed` if the client is not running.
        """
        parsed = _validated(command)
        bound_seconds = self.timeout_seconds if timeout_seconds is None else timeout_seconds
        try:
            correlation_id, record = await self._transport.request(
                key=account_key(parsed.account_id),
                value=parsed.model_dump_json().encode(),
                timeout_seconds=bound_seconds,
                headers=headers,
            )
        except NotAcknowledged as error:
            raise CommandNotSent(parsed.command_id, error.correlation_id, bound_seconds) from None
        if record is None:
            raise CommandTimeout(parsed.command_id, correlation_id, bound_seconds)
        try:
            reply = Reply.model_validate_json(record.value)
        except ValidationError as error:
            raise InvalidReply(f"reply to {parsed.command_id!r} is not a Reply: {error}") from None
        if reply.command_id != parsed.command_id:
            raise InvalidReply(
                f"reply for {reply.command_id!r} came with the correlation id of "
                f"{parsed.command_id!r}"
            )
        self._balances.remember(reply)
        return reply

    def balance(self, account_id: str) -> dict[str, Balance] | None:
        """The balances of the last reply this client received for the account (not a
        duplicate's), or None. No I/O and not a read: Kafka has no read command; for the
        current balance use the HTTP API `GET /v1/accounts/{id}` (docs/CLIENT.md)."""
        return self._balances.get(account_id)

    # ------------------------------------------------------------------ typed commands

    async def open_account(
        self, account_id: str, plan: str, *, command_id: str | None = None
    ) -> Reply:
        return await self._call("open_account", account_id, command_id, plan=plan)

    async def consume(
        self,
        account_id: str,
        action: str | None = None,
        *,
        credit_type: str | None = None,
        amount: int | None = None,
        quantity: int = 1,
        resource: str | None = None,
        metadata: Mapping[str, str | int | None] | None = None,
        command_id: str | None = None,
    ) -> Reply:
        """Spends `action`'s catalog cost (or `amount` of `credit_type`) times `quantity`."""
        return await self._call(
            "consume",
            account_id,
            command_id,
            action=action,
            credit_type=credit_type,
            amount=amount,
            quantity=quantity,
            resource=resource,
            metadata=None if metadata is None else dict(metadata),
        )

    async def reserve(
        self,
        account_id: str,
        hold_id: str,
        action: str | None = None,
        *,
        ttl_seconds: int,
        credit_type: str | None = None,
        amount: int | None = None,
        quantity: int | None = None,
        resource: str | None = None,
        command_id: str | None = None,
    ) -> Reply:
        """Holds what a use may cost; without `quantity`, the action's `max_quantity` (the most
        a streaming call may use), else 1."""
        return await self._call(
            "reserve",
            account_id,
            command_id,
            hold_id=hold_id,
            action=action,
            ttl_seconds=ttl_seconds,
            credit_type=credit_type,
            amount=amount,
            quantity=quantity,
            resource=resource,
        )

    async def capture(
        self,
        account_id: str,
        hold_id: str,
        *,
        amount: int | None = None,
        final: bool = True,
        command_id: str | None = None,
    ) -> Reply:
        """Spends `amount` of the hold (all of it by default) and releases the rest; with
        `final=False`, spends `amount` and keeps the hold open with the rest (a stream billed as
        it goes)."""
        return await self._call(
            "capture", account_id, command_id, hold_id=hold_id, amount=amount, final=final
        )

    async def extend_hold(
        self, account_id: str, hold_id: str, *, ttl_seconds: int, command_id: str | None = None
    ) -> Reply:
        """Moves the hold's expiry to `ttl_seconds` from now (never earlier than it was)."""
        return await self._call(
            "extend_hold", account_id, command_id, hold_id=hold_id, ttl_seconds=ttl_seconds
        )

    async def set_resource_limit(
        self,
        account_id: str,
        resource: str,
        daily_limit: int | None,
        *,
        command_id: str | None = None,
    ) -> Reply:
        """The account's own daily limit on one resource (at most the plan's); None clears it."""
        command = {
            "type": "set_resource_limit",
            "command_id": command_id or uuid.uuid4().hex,
            "account_id": account_id,
            "resource": resource,
            # Sent even when None: null is how a limit is cleared.
            "daily_limit": daily_limit,
        }
        return await self.send(command)

    async def release(
        self, account_id: str, hold_id: str, *, command_id: str | None = None
    ) -> Reply:
        return await self._call("release", account_id, command_id, hold_id=hold_id)

    async def grant(
        self,
        account_id: str,
        credit_type: str,
        amount: int,
        *,
        source: Literal["promotional", "trial", "admin", "migration"],
        expires_at: datetime | None = None,
        priority: int | None = None,
        reference: str | None = None,
        command_id: str | None = None,
    ) -> Reply:
        return await self._call(
            "grant",
            account_id,
            command_id,
            credit_type=credit_type,
            amount=amount,
            source=source,
            expires_at=expires_at,
            priority=priority,
            reference=reference,
        )

    async def purchase(
        self,
        account_id: str,
        *,
        payment_reference: str,
        amount_paid: int,
        currency: str,
        pack: str | None = None,
        credit_type: str | None = None,
        amount: int | None = None,
        top_up_id: str | None = None,
        command_id: str | None = None,
    ) -> Reply:
        """A payment succeeded: grants a `pack`, or credits of `credit_type` for the money."""
        return await self._call(
            "purchase",
            account_id,
            command_id,
            payment_reference=payment_reference,
            amount_paid=amount_paid,
            currency=currency,
            pack=pack,
            credit_type=credit_type,
            amount=amount,
            top_up_id=top_up_id,
        )

    async def revoke(
        self,
        account_id: str,
        *,
        reason: Literal["refund", "chargeback", "admin"],
        payment_reference: str | None = None,
        grant_id: str | None = None,
        amount: int | None = None,
        command_id: str | None = None,
    ) -> Reply:
        return await self._call(
            "revoke",
            account_id,
            command_id,
            reason=reason,
            payment_reference=payment_reference,
            grant_id=grant_id,
            amount=amount,
        )

    async def _call(
        self, type: str, account_id: str, command_id: str | None, **fields: Any
    ) -> Reply:
        command = {
            "type": type,
            "command_id": command_id or uuid.uuid4().hex,
            "account_id": account_id,
            # Absent, not null: the ledger's defaults apply, as they would for any producer.
            **{name: _json(value) for name, value in fields.items() if value is not None},
        }
        return await self.send(command)


def _json(value: Any) -> Any:
    # Commands are JSON: times travel as ISO-8601, and must carry their zone.
    return value.isoformat() if isinstance(value, datetime) else value


def _validated(command: Mapping[str, Any] | Command) -> Command:
    # A model is checked again too: anything else with model_dump must not pass as a command.
    raw = command.model_dump(mode="json") if isinstance(command, BaseModel) else dict(command)
    try:
        return parse_command(raw)
    except LedgerError as error:
        raise InvalidCommand(error.message) from None
