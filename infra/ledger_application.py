"""The eventsourcing application the ledger runs on, configured from the environment.

Environment (besides eventsourcing's own, e.g. PERSISTENCE_MODULE and ORIGINATOR_ID_TYPE):
- LEDGER_SNAPSHOT_INTERVAL: snapshot an account every N events (default 200; 0 turns it off),
  so loading a long stream reads one snapshot and at most N-1 events.
- AGGREGATE_CACHE_MAXSIZE: accounts kept in memory (default 10000); a cached account is
  fast-forwarded with the events written since, so other writers stay visible.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from contextlib import nullcontext, suppress
from typing import Any, cast

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Recording,
)
from eventsourcing.persistence import JSONTranscoder
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.utils import Environment, EnvType

from domain.account import Account
from infra.event_mapper import register_ledger_transcodings
from infra.event_store.recorder import CreditsPostgresRecorder
from infra.pool_metrics import POOLS

DEFAULT_SNAPSHOT_INTERVAL = 200


class LedgerApplication(Application[str]):
    name = "Ledger"
    env = {"AGGREGATE_CACHE_MAXSIZE": "10000"}

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        environment = super().construct_env(name, env)
        interval = int(environment.get("LEDGER_SNAPSHOT_INTERVAL", str(DEFAULT_SNAPSHOT_INTERVAL)))
        if interval > 0:
            environment["IS_SNAPSHOTTING_ENABLED"] = "y"
            # Per instance, from the environment (the library reads it as a class variable).
            setattr(self, "snapshotting_intervals", {Account: interval})  # noqa: B010
        return environment

    def __init__(self, env: EnvType | None = None) -> None:
        super().__init__(env)
        datastore = getattr(self.recorder, "datastore", None)
        if datastore is not None:  # PostgreSQL (the in-memory store has no pool)
            POOLS.track("event_store", datastore.pool)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[str]]:
        """As the library's, an account's events collected without its runtime protocol checks.

        The library asks `isinstance` of each saved object against two `runtime_checkable`
        protocols, which Python answers by walking the protocols' members: tens of
        microseconds an account, a few percent of a busy ledger's time.
        """
        processing_event: ProcessingEvent[str] = ProcessingEvent()
        for obj in objs:
            if type(obj) is Account:
                processing_event.events.extend(obj.collect_events())
                processing_event.aggregates[obj.id] = obj
            else:
                processing_event.collect_events(obj)
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)  # deprecated in the library, kept as it does
        return recordings

    def accounts(self, account_ids: Collection[str]) -> dict[str, Account]:
        """Several accounts at once, for a batch to change; unknown ids absent.

        Without fast-forwarding (the ledger, its partitions' only writer) cached accounts are
        current and are handed out themselves, not copied: a deep copy of every account of
        every batch cost a third of the ledger's time. The cache then holds what the batch
        changes before it is saved, so a caller whose batch is not saved must `forget` them.
        The others come from PostgreSQL in one round trip for all of them, and are cached.
        With fast-forwarding each account is loaded (and fast-forwarded) on its own, and
        copied, as `repository.get` does.
        """
        repository = self.repository
        recorder = self.recorder
        if (
            repository.cache is None
            or repository.fastforward
            or not isinstance(recorder, CreditsPostgresRecorder)
        ):
            found: dict[str, Account] = {}
            for account_id in account_ids:
                with suppress(AggregateNotFoundError):
                    found[account_id] = repository.get(account_id)
            return found
        found, missing = {}, []
        for account_id in account_ids:
            try:
                found[account_id] = cast(Account, repository.cache.get(account_id))
            except KeyError:
                missing.append(account_id)
        for account_id, account in self.stored_accounts(missing).items():
            found[account_id] = account
            repository.cache.put(account_id, account)
        return found

    def stored_accounts(self, account_ids: Collection[str]) -> dict[str, Account]:
        """Accounts as stored (latest snapshot, then the events after it); unknown ids absent.

        One round trip per table for all of them, and one attempt: no cache, and none of the
        library's retries (which hold the caller for ~50 s while the database is down).
        """
        recorder = self.recorder
        assert isinstance(recorder, CreditsPostgresRecorder), "reads streams in PostgreSQL"
        snapshots = None
        if self.snapshots is not None:
            snapshot_recorder = self.snapshots.recorder
            assert isinstance(snapshot_recorder, PostgresAggregateRecorder)
            snapshots = snapshot_recorder.events_table_name
        found: dict[str, Account] = {}
        for account_id, stream in recorder.select_streams(list(account_ids), snapshots).items():
            account: Any = None
            for stored in stream:
                event: Any = self.mapper.to_domain_event(stored)
                account = event.mutate(account)
            found[account_id] = account
        return found

    def cached_account_ids(self) -> list[str]:
        """The ids of the accounts the cache holds now (a copy: `forget` may follow)."""
        cache = self.repository.cache
        if cache is None:
            return []
        with getattr(cache, "lock", nullcontext()):
            return list(cache.cache)

    def forget(self, account_ids: Iterable[str]) -> None:
        """Drops accounts from the cache: what it holds of them may not be what was saved."""
        cache = self.repository.cache
        if cache is None:
            return
        for account_id in account_ids:
            with suppress(KeyError):
                cache.get(account_id, evict=True)

    def _take_snapshots(self, processing_event: ProcessingEvent[str]) -> None:
        """Snapshots of the saved accounts as they are in memory, with no read of the store.

        The library rebuilds an account from the store to snapshot it at an exact multiple of
        the interval: up to `interval` events read and replayed inside the save, a stall of
        the ledger's batch (10-30 ms) every `interval` events of a busy account. A save leaves
        each account it saved equal to the fold of its stored events, so that is what is
        snapshotted, at the version the save left it, whenever the save carried the account
        across a multiple of the interval.
        """
        if self.snapshots is None or not self.snapshotting_intervals:
            return
        first_saved: dict[str, int] = {}
        for event in processing_event.events:
            first_saved.setdefault(str(event.originator_id), event.originator_version)
        snapshots = []
        interval = self.snapshotting_intervals.get(Account)
        for account_id, account in processing_event.aggregates.items():
            first = first_saved.get(str(account_id))
            if interval is None or first is None or not isinstance(account, Account):
                continue
            assert not account.pending_events, "snapshots are taken after the save"
            if account.version // interval > (first - 1) // interval:
                snapshots.append(Account.Snapshot.take(account))
        if snapshots:
            self.snapshots.put(snapshots)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        register_ledger_transcodings(transcoder)
