"""`credits reconcile`: every read model against the fold of the events (docs/OPERATIONS.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from tqdm import tqdm

from domain.account import Account
from infra.event_store.env import event_store_env
from infra.ledger_application import LedgerApplication
from infra.settings import Settings
from projections import reconcile
from projections.read_side import ReadSide, open_read_side
from services.cli.parsing import Commands, bounded_int


def _cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    mismatches = asyncio.run(_run(settings, args.sample))
    for mismatch in mismatches:
        print(f"MISMATCH {mismatch}")
    return 1 if mismatches else 0


async def _run(settings: Settings, sample: int | None) -> list[reconcile.Mismatch]:
    # Its own application: fast-forwarding, so no cached account hides a newer stored one.
    app = await asyncio.to_thread(LedgerApplication, env=event_store_env(settings))
    try:
        async with open_read_side(settings) as read_side:
            return await _compare(read_side, app, sample)
    finally:
        await asyncio.to_thread(app.close)


async def _compare(
    read_side: ReadSide, app: LedgerApplication, sample: int | None
) -> list[reconcile.Mismatch]:
    projections = list(read_side.projections)
    mismatches: list[reconcile.Mismatch] = []
    folded: list[Account] = []
    moving = 0
    async with read_side.pool.acquire() as conn:
        head = await read_side.log.max_position(conn)
        ids = await reconcile.account_ids(conn, read_side.log, sample)
        if sample is None:
            for account_id in await reconcile.rows_without_events(conn, read_side.log):
                mismatches.append(reconcile.Mismatch(account_id, "rm_accounts", "a row", None))
        for account_id in tqdm(ids, unit="account", desc="reconcile", file=sys.stderr):
            compared = await reconcile.compare_account(
                conn, read_side.log, app, read_side.catalog, projections, account_id
            )
            if compared is None:
                moving += 1
                continue
            mismatches += compared.mismatches
            if compared.account is not None:
                folded.append(compared.account)
        moved = await read_side.log.max_position(conn) != head
        if sample is None and not moving and not moved:
            mismatches += await reconcile.outstanding_mismatches(conn, folded, read_side.catalog)
    print(f"{len(ids) - moving} account(s) compared, {len(mismatches)} mismatch(es)")
    if moving:
        print(f"{moving} account(s) not compared: events not yet projected (run again)")
    if sample is not None or moving or moved:
        why = "a sample" if sample is not None else "events arrived meanwhile"
        print(f"credits outstanding (rm_analytics_outstanding) not compared: {why}")
    return mismatches


def add_commands(commands: Commands) -> None:
    parser = commands.add_parser(
        "reconcile",
        help="compare every read model with the fold of the events; exit 1 on a mismatch",
        description="For every account (or a random --sample), folds its events from the "
        "event store and compares the result with each read model: the account, balances, "
        "lots, holds, transaction heads and usage; on a full run with nothing moving, also "
        "the credits outstanding. Accounts whose newest events are not projected yet are "
        "counted, not compared. Prints each mismatch (account, read model, what it holds, "
        "what the events give) with a progress bar on standard error. Exits 0 when all "
        "agree, 1 on any mismatch.",
    )
    parser.add_argument(
        "--sample",
        type=bounded_int(1, reconcile.MAX_ACCOUNTS),
        metavar="N",
        help="compare N accounts chosen at random (default: every account)",
    )
    parser.set_defaults(handler=_cmd_reconcile)
