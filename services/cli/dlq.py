"""`credits dlq list|show|replay`: the dead-letter topic, read and sent back (docs/OPERATIONS.md).

A record's position is `PARTITION:OFFSET` in the DLQ topic. Replay sends the original key, value
and headers (less the DLQ's own: `infra/dlq.py`) to the record's source topic, where the
original's reader decides afresh: a command already applied answers `duplicate`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from infra.dlq import DlqCode, DlqRecord
from infra.settings import Settings, Topic
from services.cli import dlq_topic
from services.cli.parsing import Commands, bounded_int, group

# `credits dlq list` shows a key or a message cut to this many characters.
SHOWN_CHARS = 60


def _position(text: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    try:
        if sep and int(partition) >= 0 and int(offset) >= 0:
            return int(partition), int(offset)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"want PARTITION:OFFSET, got {text!r}")


def _chosen(args: argparse.Namespace) -> Callable[[DlqRecord], bool]:
    codes = set(args.code or ())
    keys = {k.encode() for k in args.key or ()}

    def chosen(record: DlqRecord) -> bool:
        return (
            (not codes or record.code in codes)
            and (args.source_topic is None or record.source_topic == args.source_topic)
            and (not keys or record.key in keys)
        )

    return chosen


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    scan = asyncio.run(dlq_topic.scan(settings, args.limit, _chosen(args), with_values=False))
    print(
        f"{'partition:offset':<16}  {'time (UTC)':<19}  {'code':<20}  "
        f"{'source topic:partition:offset':<40}  key"
    )
    for record in scan.records:
        source = f"{record.source_topic}:{record.source_partition}:{record.source_offset}"
        position = f"{record.partition}:{record.offset}"
        print(
            f"{position:<16}  "
            f"{_time(record):<19}  {record.code:<20}  {source:<40}  "
            f"{_cut(_text(record.key))}"
        )
    print(f"{len(scan.records)} record(s) in {settings.topic(Topic.DLQ)}")
    if scan.unread:
        print(f"{scan.unread} older record(s) not read: raise --limit (records per partition)")
    return 0


def _cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    partition, offset = args.position
    record = asyncio.run(dlq_topic.fetch(settings, partition, offset))
    if record is None:
        print(f"not_found: no record {partition}:{offset} in the DLQ", file=sys.stderr)
        return 1
    print(f"position   {record.partition}:{record.offset} of {settings.topic(Topic.DLQ)}")
    print(f"time       {_time(record)} UTC")
    print(f"key        {_text(record.key)}")
    print("headers")
    for name, value in record.headers:
        print(f"  {name}: {_text(value)}")
    why = _not_replayable(record, settings)
    print(f"replayable {'no: ' + why if why else 'yes'}")
    print(f"value      ({record.value_bytes} bytes)")
    print(_text(record.value, lines=True))
    return 0


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    if not args.positions and not (args.code or args.source_topic or args.key):
        print(
            "usage: name the records (PARTITION:OFFSET ...) or choose them with --code, "
            "--source-topic or --key",
            file=sys.stderr,
        )
        return 2
    records, missing = asyncio.run(_chosen_records(args, settings))
    for partition, offset in missing:
        print(f"not found {partition}:{offset}: no such record in the DLQ")
    replayable = []
    chosen = _chosen(args)
    for record in records:
        why = _not_replayable(record, settings) or (
            None if chosen(record) else "it does not match the filters given"
        )
        if why:
            print(f"not replayed {record.partition}:{record.offset}: {why}")
        else:
            replayable.append(record)
    if args.dry_run:
        for record in replayable:
            print(
                f"would replay {record.partition}:{record.offset} ({record.code}) to "
                f"{record.source_topic} with key {_cut(_text(record.key))}"
            )
    else:
        for sent in asyncio.run(dlq_topic.send_back(settings, replayable)):
            print(
                f"replayed {sent.record.partition}:{sent.record.offset} ({sent.record.code}) "
                f"to {sent.topic} partition {sent.partition} offset {sent.offset}"
            )
    verb = "would replay" if args.dry_run else "replayed"
    skipped = len(records) - len(replayable) + len(missing)
    print(f"{verb} {len(replayable)} record(s); {skipped} not")
    return 1 if skipped else 0


async def _chosen_records(
    args: argparse.Namespace, settings: Settings
) -> tuple[list[DlqRecord], list[tuple[int, int]]]:
    """(the records chosen, in DLQ order; the positions named that the DLQ does not hold)."""
    if not args.positions:
        scan = await dlq_topic.scan(settings, args.limit, _chosen(args), with_values=True)
        return scan.records, []
    # Named records the filters do not choose are kept here; the caller says why it skips them.
    found, missing = [], []
    for partition, offset in dict.fromkeys(args.positions):
        record = await dlq_topic.fetch(settings, partition, offset)
        if record is None:
            missing.append((partition, offset))
        else:
            found.append(record)
    return found, missing


def _not_replayable(record: DlqRecord, settings: Settings) -> str | None:
    if record.truncated:
        parts = ", ".join(record.truncated)
        return f"the DLQ kept only part of the original ({parts}): it cannot be sent as it was"
    if record.source_topic is None:
        return "no source.topic header: not written by this service's DLQ"
    if record.source_topic not in dlq_topic.replay_topics(settings):
        return f"replay does not write to {record.source_topic} (see docs/OPERATIONS.md)"
    return None


def _time(record: DlqRecord) -> str:
    return f"{datetime.fromtimestamp(record.timestamp_ms / 1000, UTC):%Y-%m-%d %H:%M:%S}"


def _text(data: bytes | None, *, lines: bool = False) -> str:
    """Bytes as text when they are UTF-8, else as `hex:...`; text with control characters (or
    that could be read as hex) as a Python literal, so nothing reaches the terminal but text.
    `lines`: newlines and tabs are text too (a pretty-printed JSON value)."""
    if data is None:
        return "(null)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"hex:{data.hex()}"
    plain = text.replace("\n", "").replace("\t", "") if lines else text
    return text if plain.isprintable() and not text.startswith(("hex:", "(null)")) else repr(text)


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def add_commands(commands: Commands) -> None:
    dlq = group(
        commands,
        "dlq",
        "inspect the dead-letter topic and replay its records",
        "Inspect the dead-letter topic (credits.dlq) and send records back to where they came "
        "from (docs/OPERATIONS.md).",
    )
    listing = dlq.add_parser(
        "list",
        help="the DLQ's records: position, time, code, source, key",
        description="Lists the records of the DLQ topic, oldest first: their position "
        "(PARTITION:OFFSET), time, error code, source topic, partition and offset, and key. "
        "Reads at most the newest --limit records of each partition, then filters.",
    )
    _filters(listing)
    listing.set_defaults(handler=_cmd_list)

    show = dlq.add_parser(
        "show",
        help="one DLQ record: headers and value",
        description="Prints one DLQ record: its key, every header, whether it can be replayed, "
        "and its value (as text when UTF-8, else as hex). Exits 1 when there is no such record.",
    )
    show.add_argument(
        "position", type=_position, metavar="PARTITION:OFFSET", help="the record's position"
    )
    show.set_defaults(handler=_cmd_show)

    replay = dlq.add_parser(
        "replay",
        help="send records back to their source topic, with their original key and headers",
        description="Sends the chosen records (by PARTITION:OFFSET, or every record the "
        "filters choose) back to their source topic (credits.commands for the ledger's) with "
        "their original key, value and headers, less the DLQ's own error.*, source.* and "
        "original.* headers. A record the DLQ truncated is not replayed, nor one from a topic "
        "replay does not write to (credits.events: public). Safe to repeat: a command already "
        "applied answers `duplicate`. Exits 0 when every chosen record was sent (or would be, "
        "with --dry-run), 1 when one was not, 2 when nothing was chosen.",
    )
    replay.add_argument(
        "positions",
        nargs="*",
        type=_position,
        metavar="PARTITION:OFFSET",
        help="the records to replay (default: every record the filters choose)",
    )
    _filters(replay)
    replay.add_argument(
        "--dry-run", action="store_true", help="print what would be sent; send nothing"
    )
    replay.set_defaults(handler=_cmd_replay)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--code",
        action="append",
        choices=[c.value for c in DlqCode],
        help="only records with this error.code (repeatable)",
    )
    parser.add_argument(
        "--source-topic", metavar="TOPIC", help="only records that came from this topic"
    )
    parser.add_argument(
        "--key", action="append", help="only records with this key, e.g. an account (repeatable)"
    )
    parser.add_argument(
        "--limit",
        type=bounded_int(1, dlq_topic.MAX_READ_RECORDS),
        default=dlq_topic.DEFAULT_READ_RECORDS,
        help=f"read at most the newest N records of each DLQ partition (default "
        f"{dlq_topic.DEFAULT_READ_RECORDS}, at most {dlq_topic.MAX_READ_RECORDS})",
    )
