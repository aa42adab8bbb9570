"""`credits projections` and `credits account`: the read models and one account, inspected."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from tqdm import tqdm

from infra.settings import Settings
from projections import ops as projection_ops
from projections.account_at import AsOfInFuture, AsOfInvalid, parse_as_of
from projections.read_side import open_read_side
from projections.rebuild import RebuildResult, rebuild
from projections.registry import PROJECTION_NAMES
from services.cli.parsing import Commands, group


def _cmd_projections_status(_: argparse.Namespace, settings: Settings) -> int:
    async def read() -> tuple[int, list[projection_ops.Status]]:
        async with open_read_side(settings) as read_side:
            return await projection_ops.status(read_side)

    head, rows = asyncio.run(read())
    print(f"event log head: {head}")
    print(f"{'projection':<24} {'position':>10} {'lag':>10} {'skipped':>8}  last error")
    for row in rows:
        error = f"{row.error_at:%Y-%m-%d %H:%M:%S} {row.last_error}" if row.last_error else "-"
        print(
            f"{row.projection:<24} {row.position:>10} {row.lag_events:>10} "
            f"{row.skipped_events:>8}  {error}"
        )
    if any(row.skipped_events for row in rows):
        print("skipped: events a read model went past; see rm_skipped_events (docs/READ_MODELS.md)")
    return 1 if any(row.last_error for row in rows) else 0


def _cmd_projections_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> RebuildResult:
        async with open_read_side(settings) as read_side:
            projection = read_side.projections[args.name]
            async with read_side.pool.acquire() as conn:
                total = await read_side.log.max_position(conn)
            with tqdm(total=total, unit="events", unit_scale=True, desc=args.name) as bar:
                return await rebuild(read_side.pool, read_side.log, projection, progress=bar.update)

    result = asyncio.run(run())
    print(
        f"{result.projection}: {result.events} events in {result.build_seconds:.1f} s "
        f"({result.events_per_second:,.0f} events/s), position {result.position}"
    )
    if result.skipped:
        print(f"{result.skipped} events skipped (see rm_skipped_events)")
    print(f"rebuilt checksum {result.rebuilt_checksum}")
    print(f"live checksum    {result.live_checksum}")
    print(
        "match: the rebuilt read model is live" if result.matches else "MISMATCH: rebuilt is live"
    )
    return 0 if result.matches else 1


def _cmd_account_show(args: argparse.Namespace, settings: Settings) -> int:
    if args.as_of is not None:
        return _account_show_at(args, settings)

    async def read() -> dict[str, Any]:
        async with open_read_side(settings) as read_side:
            return await projection_ops.account_report(read_side, args.account_id, args.events)

    report = asyncio.run(read())
    if report["account"] is None and not report["stream"]:
        print(f"unknown_account: no account {args.account_id}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, default=str))
    return 0


def _account_show_at(args: argparse.Namespace, settings: Settings) -> int:
    try:
        at = parse_as_of(args.as_of, datetime.now(UTC))
    except AsOfInvalid as error:
        print(f"invalid_request: --as-of: {error}", file=sys.stderr)
        return 2
    except AsOfInFuture as error:
        print(f"as_of_in_future: --as-of: {error}", file=sys.stderr)
        return 2

    async def read() -> dict[str, Any] | None:
        async with open_read_side(settings) as read_side:
            return await projection_ops.account_report_at(
                read_side, args.account_id, args.events, at
            )

    report = asyncio.run(read())
    if report is None:
        print(f"unknown_account: no account {args.account_id} at {at.isoformat()}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, default=str))
    return 0


def add_commands(commands: Commands) -> None:
    projection_commands = group(
        commands,
        "projections",
        "inspect and rebuild the read models",
        "Inspect and rebuild the read models (docs/READ_MODELS.md).",
    )
    status = projection_commands.add_parser(
        "status",
        help="position, lag and last error of every read model",
        description="Prints each projection's position, its lag behind the event log (events) "
        "and its last error. Exits 1 when a projection has an error.",
    )
    status.set_defaults(handler=_cmd_projections_status)
    rebuild_parser = projection_commands.add_parser(
        "rebuild",
        help="rebuild one read model online (blue/green), then swap it in",
        description="Replays the event log into shadow tables with a progress bar, swaps them "
        "in atomically (reads keep working), and prints the checksums of the rebuilt and the "
        "live read model. Exits 1 when they differ.",
    )
    rebuild_parser.add_argument("name", choices=PROJECTION_NAMES, help="the read model")
    rebuild_parser.set_defaults(handler=_cmd_projections_rebuild)

    account_commands = group(commands, "account", "inspect one account", "Inspect one account.")
    show = account_commands.add_parser(
        "show",
        help="an account's stream, balances, lots and holds (JSON)",
        description="Prints the newest events of the account's stream (from the event store) "
        "and its balances, lots and holds (from the read models) as JSON; with --as-of T, the "
        "account as the ledger recorded it at T, folded from its stored events up to T.",
    )
    show.add_argument("account_id", metavar="ID", help="the account id")
    show.add_argument(
        "--events", type=int, default=50, help="newest events to print (default 50, at most 1000)"
    )
    show.add_argument(
        "--as-of",
        metavar="T",
        help="show the account as the ledger recorded it at T (RFC 3339 with an offset, e.g. "
        "2026-01-31T10:00:00Z; an event at exactly T counts): balances, lots and holds folded "
        "from the stored events up to T, and the newest events up to T. Exits 1 if the account "
        "had not opened by T, 2 if T is malformed or in the future",
    )
    show.set_defaults(handler=_cmd_account_show)
