"""The ledger's service layer: commands in, replies out, each command applied at most once.

A command's receipt (`infra/receipts.py`) is saved with its events in one `Application.save`,
so a retry finds either both or neither. Only accepted commands get a receipt: a rejected one
changes nothing and writes nothing, and its retry is decided afresh.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import CanMutateAggregate
from eventsourcing.persistence import IntegrityError
from pydantic_core import from_json

from domain import results
from domain.account import Account, Context
from domain.catalog import Catalog
from domain.clock import Clock
from domain.commands import Command, OpenAccount, parse_command
from domain.errors import ErrorCode, LedgerError
from domain.replies import Reply
from infra.event_store.batch_writes import NO_WRITES, BatchWrites
from infra.ledger_application import LedgerApplication
from infra.receipts import Receipt, ReceiptConflict, ReceiptReader
from services.ledger.handlers import decide

# A batch is one database transaction: bounded so that a retry stays cheap.
MAX_BATCH = 1000
# Version conflicts mean another writer got there first; a few rereads settle it. The jittered
# pause spreads writers racing on one hot account, so they do not collide again in lockstep.
MAX_ATTEMPTS = 10
BACKOFF_SECONDS = 0.002
# Threads of one process (the API's pool) that write the same account take turns instead of
# colliding: optimistic retries are for other processes. Striped so the lock table is bounded.
ACCOUNT_LOCK_STRIPES = 256


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class RetriesExhausted(RuntimeError):
    pass


@dataclass
class _Decisions:
    """One attempt at a batch: the replies, and what to save if they stand."""

    replies: list[Reply] = field(default_factory=list)
    accounts: dict[str, Account | None] = field(default_factory=dict)
    receipts: list[Receipt] = field(default_factory=list)
    # Reply index → (account id, version after the command), to fill `position` once saved.
    versions: dict[int, tuple[str, int]] = field(default_factory=dict)
    seen: dict[tuple[str, str], tuple[str, Reply]] = field(default_factory=dict)
    # Receipts already stored for the batch's commands, fetched in one lookup.
    stored: dict[tuple[str, str], tuple[str, Reply]] = field(default_factory=dict)
    # Reply index → its JSON, where the receipt needed it already (serialised once).
    reply_json: dict[int, str] = field(default_factory=dict)


class LedgerService:
    def __init__(
        self,
        app: LedgerApplication,
        catalog: Catalog,
        clock: Clock,
        *,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        assert max_attempts >= 1
        self.app = app
        self.catalog = catalog
        self.clock = clock
        self.max_attempts = max_attempts
        self._account_locks = [threading.Lock() for _ in range(ACCOUNT_LOCK_STRIPES)]

    def handle(self, command: bytes | str | dict[str, Any] | Command) -> Reply:
        return self.handle_many([command])[0]

    def handle_many(
        self,
        commands: Sequence[bytes | str | dict[str, Any] | Command],
        *,
        save_with_replies: Callable[[list[Reply], list[str]], BatchWrites] | None = None,
        writes: BatchWrites = NO_WRITES,
    ) -> list[Reply]:
        """Decide a batch in memory, then save every account and receipt in one transaction.

        `writes` go to the recorder with the events (e.g. the Kafka positions the batch came
        from). `save_with_replies`, if given, is called with the decided replies (before they
        have a `position`) and their JSON on every attempt, and the replies it returns are saved
        too: the Kafka consumer keeps the replies in the same transaction so that a crash
        cannot lose them.
        """
        if len(commands) > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} commands")
        parsed = [_parse(raw) for raw in commands]
        stripes = sorted(
            {hash(c.account_id) % ACCOUNT_LOCK_STRIPES for c in parsed if not isinstance(c, Reply)}
        )
        with ExitStack() as held:
            # Always in ascending order, so two batches sharing accounts cannot deadlock.
            for stripe in stripes:
                held.enter_context(self._account_locks[stripe])
            return self._decide_and_save(parsed, save_with_replies, writes)

    def _decide_and_save(
        self,
        parsed: list[Command | Reply],
        save_with_replies: Callable[[list[Reply], list[str]], BatchWrites] | None,
        writes: BatchWrites,
    ) -> list[Reply]:
        touched = list(dict.fromkeys(c.account_id for c in parsed if not isinstance(c, Reply)))
        for attempt in range(1, self.max_attempts + 1):
            try:
                # Optimistic first: most commands are new. An accepted retry then fails the
                # save on its receipt's primary key (ReceiptConflict), and a refused one is
                # checked below; either sends the batch round again, reading receipts first.
                # That saves a database round trip per batch (about a fifth of a small batch's
                # time); only batches holding a retried command pay for a second attempt.
                decisions = self._decide(parsed, self.clock.now(), read_receipts=attempt > 1)
                if attempt == 1 and self._refuses_a_retry(parsed, decisions):
                    self.app.forget(touched)
                    decisions = self._decide(parsed, self.clock.now(), read_receipts=True)
                changed = [a for a in decisions.accounts.values() if a and a.pending_events]
                replies = writes
                if save_with_replies is not None:
                    texts = [
                        decisions.reply_json.get(i) or reply.model_dump_json()
                        for i, reply in enumerate(decisions.replies)
                    ]
                    replies = save_with_replies(decisions.replies, texts)
                # Accounts decided on but not changed (a refusal writes nothing): the save
                # checks that no other writer moved them on since they were read.
                read = {
                    account_id: account.version
                    for account_id, account in decisions.accounts.items()
                    if account is not None and not account.pending_events
                }
                batch = replace(
                    writes,
                    receipts=decisions.receipts,
                    kafka_replies=replies.kafka_replies,
                    read_versions=read,
                )
                recordings = self.app.save(*changed, writes=batch)
            except IntegrityError as conflict:
                # Someone else wrote these accounts (a version conflict, or a stale read): what
                # is cached of them is stale.
                self.app.forget(touched)
                if attempt == self.max_attempts:
                    raise
                if not isinstance(conflict, ReceiptConflict):
                    # A receipt conflict needs no pause: the next attempt reads the receipt.
                    time.sleep(random.uniform(0, BACKOFF_SECONDS * attempt))
                continue
            except BaseException:
                # The batch changed cached accounts in place (see `LedgerApplication.accounts`)
                # and was not saved: the cache must not keep those changes.
                self.app.forget(touched)
                raise
            positions = {
                (str(r.notification.originator_id), r.notification.originator_version): (
                    r.notification.id
                )
                for r in recordings
            }
            return [
                reply.model_copy(update={"position": positions.get(decisions.versions[i])})
                if i in decisions.versions
                else reply
                for i, reply in enumerate(decisions.replies)
            ]
        raise RetriesExhausted  # unreachable: the last attempt returns or raises

    def _decide(
        self, parsed: list[Command | Reply], now: datetime, *, read_receipts: bool
    ) -> _Decisions:
        decisions = _Decisions()
        commands = [c for c in parsed if not isinstance(c, Reply)]
        if read_receipts:
            decisions.stored = self._receipts([(c.account_id, c.command_id) for c in commands])
        account_ids = list(dict.fromkeys(c.account_id for c in commands))
        loaded = self.app.accounts(account_ids)
        decisions.accounts = {account_id: loaded.get(account_id) for account_id in account_ids}
        for item in parsed:
            if isinstance(item, Reply):
                decisions.replies.append(item)
                continue
            decisions.replies.append(self._decide_one(decisions, item, now))
        return decisions

    def _refuses_a_retry(self, parsed: list[Command | Reply], decisions: _Decisions) -> bool:
        """Whether a command refused without reading receipts had been accepted before.

        Its retry must answer `duplicate` with the first result, not a refusal decided afresh;
        a refusal writes nothing, so no primary key would catch it.
        """
        refused = [
            (item.account_id, item.command_id)
            for item, reply in zip(parsed, decisions.replies, strict=True)
            if not isinstance(item, Reply) and reply.status == "rejected"
        ]
        return bool(refused) and bool(self._receipts(refused))

    def _decide_one(self, decisions: _Decisions, command: Command, now: datetime) -> Reply:
        key = (command.account_id, command.command_id)
        payload_sha256 = command.payload_sha256()
        earlier = decisions.seen.get(key) or decisions.stored.get(key)
        if earlier is not None:
            if earlier[0] != payload_sha256:
                return Reply.rejected(
                    command_id=command.command_id,
                    account_id=command.account_id,
                    error=LedgerError(
                        ErrorCode.idempotency_conflict,
                        "command_id already used with a different payload",
                    ),
                )
            return earlier[1].model_copy(update={"status": "duplicate", "position": None})

        account = decisions.accounts[command.account_id]
        version_before = account.version if account is not None else None
        # The events this batch accepted so far are the first `accepted_so_far` pending ones
        # (copied only on a refusal: a copy per command is quadratic on a hot account).
        accepted_so_far = len(account.pending_events) if account is not None else 0
        work, outcome = self._execute(account, command, now)
        if isinstance(outcome, LedgerError):
            # The reply shows the account as of now, catch-up included ...
            balances = work.balances(self.catalog) if work is not None else {}
            if work is not None and len(work.pending_events) > accepted_so_far:
                # ... but what the refused command triggered (catch-up) is not kept.
                decisions.accounts[command.account_id] = self._replayed(
                    command.account_id, work.pending_events[:accepted_so_far]
                )
            return Reply.rejected(
                command_id=command.command_id,
                account_id=command.account_id,
                error=outcome,
                balances=balances,
            )

        assert work is not None
        reply = Reply.accepted(
            command_id=command.command_id,
            account_id=command.account_id,
            balances=work.balances(self.catalog),
            result=outcome,
        )
        decisions.accounts[command.account_id] = work
        reply_json = reply.model_dump_json()
        decisions.reply_json[len(decisions.replies)] = reply_json
        decisions.receipts.append(
            Receipt(
                account_id=command.account_id,
                command_id=command.command_id,
                payload_sha256=payload_sha256,
                reply_json=reply_json,
            )
        )
        decisions.seen[key] = (payload_sha256, reply)
        if work.version != version_before:
            decisions.versions[len(decisions.replies)] = (command.account_id, work.version)
        return reply

    def _execute(
        self, account: Account | None, command: Command, now: datetime
    ) -> tuple[Account | None, results.CommandResult | LedgerError]:
        """Run the command on the batch's copy of the account (see `_replayed` for refusals)."""
        if isinstance(command, OpenAccount):
            if account is not None:
                error = LedgerError(ErrorCode.account_exists, f"{command.account_id} is open")
                return account, error
            ctx = Context(self.catalog, now, command.command_id)
            try:
                opened = Account.open(ctx, command.account_id, command.plan)
            except LedgerError as e:
                return None, e
            return opened, results.Opened(command.plan)
        if account is None:
            return None, LedgerError(ErrorCode.unknown_account, f"no account {command.account_id}")
        work = account
        # An account's events never go back in time, even if this host's clock does.
        ctx = Context(self.catalog, max(now, account.modified_on), command.command_id)
        if work.plan not in self.catalog.plans:
            error = LedgerError(
                ErrorCode.unknown_plan,
                f"plan {work.plan!r} is not in catalog {self.catalog.version}",
            )
            return account, error
        try:
            result = decide(work, ctx, command)
        except LedgerError as e:
            return work, e
        return work, result

    def _receipts(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, Reply]]:
        recorder: ReceiptReader = self.app.recorder  # type: ignore[assignment]
        return {
            key: (receipt.payload_sha256, Reply.model_validate_json(receipt.reply_json))
            for key, receipt in recorder.select_receipts(keys).items()
        }

    def _replayed(self, account_id: str, accepted: list[CanMutateAggregate[str]]) -> Account | None:
        """The account as saved, plus the events this batch accepted so far, still pending.

        Copying every account before every command would make a refusal free but every
        acceptance expensive (quadratic on a hot account); refusals are the rarer case.
        """
        # The cached account is the one the refused command changed: read the saved one.
        self.app.forget([account_id])
        account = self._load(account_id)
        for event in accepted:
            account = event.mutate(account)
        if account is not None:
            account._pending_events = list(accepted)
        return account

    def _load(self, account_id: str) -> Account | None:
        try:
            account: Account = self.app.repository.get(account_id)
        except AggregateNotFoundError:
            return None
        return account


def _parse(raw: bytes | str | dict[str, Any] | Command) -> Command | Reply:
    if not isinstance(raw, bytes | str | dict):
        return raw
    try:
        return parse_command(raw)
    except LedgerError as e:
        ids = best_effort_ids(raw)
        return Reply.rejected(
            command_id=ids.get("command_id", ""), account_id=ids.get("account_id", ""), error=e
        )


def best_effort_ids(raw: bytes | str | dict[str, Any]) -> dict[str, str]:
    """The ids of a command that failed validation, so that its sender can match the reply.

    Any input: pydantic's JSON parser bounds nesting (the standard library's recursion would
    raise RecursionError on a deep document), and an id is kept only if a reply can carry it.
    """
    try:
        data = raw if isinstance(raw, dict) else from_json(raw)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        k: v[:128]
        for k in ("command_id", "account_id")
        if isinstance(v := data.get(k), str) and _carriable(v[:128])
    }


def _carriable(text: str) -> bool:
    """Text a reply (JSON) and PostgreSQL can hold: valid UTF-8, no NUL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text
