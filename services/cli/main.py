"""The `credits` command line (DESIGN §2.6). Each subcommand has `--help`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from typing import Any

import asyncpg
from credits_client import CreditsClient
from credits_client.client import DEFAULT_TIMEOUT_SECONDS
from credits_client.errors import CommandTimeout, InvalidCommand
from tqdm import tqdm

from domain.replies import Reply
from infra.kafka_topics import create_topics, partition_counts
from infra.logs import configure_logging
from infra.settings import Settings, Topic
from projections import ops as projection_ops
from projections.read_side import open_read_side
from projections.rebuild import RebuildResult, rebuild
from projections.registry import PROJECTION_NAMES
from services.api import keys as api_keys
from services.cli import simulate
from services.cli.demo import DEMO_CATALOG_VERSION, SCENARIO, DemoRun, Outcome, run_demo
from services.cli.supervisor import COMPONENTS, run_process
from services.payments.purchases import Payment, PaymentState, PostgresPurchases

# `credits send` and `credits demo` are clients of the ledger like any producer service.
CLI_CLIENT_ID = "credits-cli"


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    names = list(COMPONENTS) if args.component == "all" else [args.component]
    return run_process(names, settings)


def _cmd_topics_create(_: argparse.Namespace, settings: Settings) -> int:
    async def create_and_describe() -> tuple[dict[str, str], dict[str, int]]:
        outcome = await create_topics(settings)
        return outcome, await partition_counts(settings, list(outcome))

    outcome, counts = asyncio.run(create_and_describe())
    for name, state in outcome.items():
        print(f"{name}\t{state}\tpartitions={counts.get(name, '?')}")
    return 0


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
    async def read() -> dict[str, Any]:
        async with open_read_side(settings) as read_side:
            return await projection_ops.account_report(read_side, args.account_id, args.events)

    report = asyncio.run(read())
    if report["account"] is None and not report["stream"]:
        print(f"unknown_account: no account {args.account_id}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, default=str))
    return 0


def _cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        command = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        print(
            f"invalid_command: cannot read a JSON command from {args.file}: {error}",
            file=sys.stderr,
        )
        return 2
    if not isinstance(command, dict):
        print("invalid_command: the file must hold one JSON object", file=sys.stderr)
        return 2
    if "command_id" not in command:
        # Printed so that the same command can be sent again safely (it applies once).
        command["command_id"] = uuid.uuid4().hex
        print(f"command_id {command['command_id']} (generated)", file=sys.stderr)

    async def send() -> Reply:
        async with _one_off_client(settings, args.timeout_seconds) as client:
            return await client.send(command)

    try:
        reply = asyncio.run(send())
    except InvalidCommand as error:
        print(f"invalid_command: {error}", file=sys.stderr)
        return 2
    except CommandTimeout as error:
        print(f"timeout: {error}", file=sys.stderr)
        return 1
    print(reply.model_dump_json(indent=2))
    return 1 if reply.status == "rejected" else 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    account_id = args.account_id or f"demo-{uuid.uuid4().hex[:8]}"
    print(
        f"account {account_id}, catalog {DEMO_CATALOG_VERSION}, "
        f"through {settings.topic(Topic.COMMANDS)}"
    )

    width = max(len(step.says) for step in SCENARIO)

    def show(outcome: Outcome) -> None:
        number = SCENARIO.index(outcome.step) + 1
        code = f" {outcome.reply.error.code}" if outcome.reply.error is not None else ""
        mark = "" if outcome.as_expected else f"   UNEXPECTED (wanted {outcome.step.status})"
        print(
            f"{number:>2}. {outcome.step.says:<{width}} {outcome.reply.status}{code}"
            f"  credits {outcome.credits_available}{mark}"
        )

    async def run() -> DemoRun:
        async with _one_off_client(settings, args.timeout_seconds) as client:
            return await run_demo(client, account_id, on_step=show)

    try:
        result = asyncio.run(run())
    except CommandTimeout as error:
        print(f"timeout: {error} (is `credits run ledger` running?)", file=sys.stderr)
        return 1
    if not result.as_expected:
        print(
            f"the ledger did not answer as the demo catalog ({DEMO_CATALOG_VERSION}) says: "
            "is the ledger running with domain/catalogs/demo.toml?",
            file=sys.stderr,
        )
        return 1
    print(f"all {len(result.outcomes)} steps answered as expected")
    return 0


def _cmd_payments_unapplied(args: argparse.Namespace, settings: Settings) -> int:
    async def read() -> list[Payment]:
        purchases = await PostgresPurchases.open(settings)
        try:
            states = [PaymentState(s) for s in args.state] if args.state else None
            return await purchases.unapplied(states, args.limit)
        finally:
            await purchases.close()

    payments = asyncio.run(read())
    print(f"{'sent at (UTC)':<19}  {'state':<14}  {'payment':<28}  {'account':<24}  detail")
    for payment in payments:
        if payment.state == PaymentState.REFUNDED:
            detail = f"{payment.refusal_code}; refund {payment.refund_id} ({payment.refund_cents})"
        elif payment.state == PaymentState.REFUND_FAILED:
            detail = f"{payment.refusal_code}; refund failed: {payment.refund_error}"
        else:
            detail = payment.refusal_code or "-"
        print(
            f"{payment.sent_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}  {payment.state.value:<14}  "
            f"{payment.payment_reference:<28}  {payment.account_id:<24}  {detail}"
        )
    print(f"{len(payments)} payment(s)")
    return 0


def _cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    async def create() -> api_keys.NewKey:
        async with _keys_connection(settings) as conn:
            return await api_keys.create_key(conn, args.name, api_keys.Scope(args.scope))

    created = asyncio.run(create())
    # The key on standard output, alone, so it can be captured; shown this once only.
    print(created.secret_key)
    print(
        f"key_id {created.key.key_id} ({created.key.scope.value}, {created.key.name}): store the "
        "key now, it is not shown again",
        file=sys.stderr,
    )
    return 0


def _cmd_keys_list(_: argparse.Namespace, settings: Settings) -> int:
    async def read() -> list[api_keys.ApiKey]:
        async with _keys_connection(settings) as conn:
            return await api_keys.list_keys(conn)

    print(f"{'key_id':<16}  {'scope':<5}  {'created_at':<19}  {'revoked_at':<19}  name")
    for key in asyncio.run(read()):
        revoked = f"{key.revoked_at:%Y-%m-%d %H:%M:%S}" if key.revoked_at else "-"
        print(
            f"{key.key_id:<16}  {key.scope.value:<5}  {key.created_at:%Y-%m-%d %H:%M:%S}  "
            f"{revoked:<19}  {key.name}"
        )
    return 0


def _cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def revoke() -> bool:
        async with _keys_connection(settings) as conn:
            return await api_keys.revoke_key(conn, args.key_id)

    if not asyncio.run(revoke()):
        print(f"no active key {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}: refused from the next request on")
    return 0


@contextlib.asynccontextmanager
async def _keys_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection for one keys command, with the keys table created if missing."""
    conn = await asyncpg.connect(settings.pg_dsn(), timeout=settings.pg_connect_timeout_seconds)
    try:
        await api_keys.ensure_table(conn)
        yield conn
    finally:
        await conn.close()


def _cmd_openapi(_: argparse.Namespace, __: Settings) -> int:
    from contracts.openapi import openapi_document, render

    sys.stdout.write(render(openapi_document()))
    return 0


def _one_off_client(settings: Settings, timeout_seconds: float) -> CreditsClient:
    """A client for one CLI run: it reads the shared replies topic rather than leaving a reply
    topic of its own behind after every run."""
    return CreditsClient(
        settings,
        client_id=CLI_CLIENT_ID,
        reply_topic=settings.topic(Topic.REPLIES),
        create_reply_topic=False,
        timeout_seconds=timeout_seconds,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="credits",
        description="Event-sourced credit ledger: run its components and operate it.",
        epilog="Settings come from CREDITS_* environment variables (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run service components in the foreground until Ctrl-C",
        description="Runs one component, or all of them in one process (development).",
    )
    run.add_argument(
        "component",
        nargs="?",
        default="all",
        choices=["all", *COMPONENTS],
        help="which component to run (default: all)",
    )
    run.set_defaults(handler=_cmd_run)

    topics = commands.add_parser(
        "topics", help="manage the Kafka topics", description="Manage the public Kafka topics."
    )
    topic_commands = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topic_commands.add_parser(
        "create",
        help="create the public topics that do not exist yet",
        description=(
            "Creates every topic of DESIGN §2.1 (with CREDITS_TOPIC_PREFIX) that does not exist, "
            "with CREDITS_TOPIC_PARTITIONS partitions. Existing topics are left as they are."
        ),
    )
    create.set_defaults(handler=_cmd_topics_create)

    projection_commands = _group(
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

    account_commands = _group(commands, "account", "inspect one account", "Inspect one account.")
    show = account_commands.add_parser(
        "show",
        help="an account's stream, balances, lots and holds (JSON)",
        description="Prints the newest events of the account's stream (from the event store) "
        "and its balances, lots and holds (from the read models) as JSON.",
    )
    show.add_argument("account_id", metavar="ID", help="the account id")
    show.add_argument(
        "--events", type=int, default=50, help="newest events to print (default 50, at most 1000)"
    )
    show.set_defaults(handler=_cmd_account_show)

    send = commands.add_parser(
        "send",
        help="send one command through Kafka and print the ledger's reply",
        description="Sends the command in COMMAND.json (DESIGN §2.2; '-' reads standard input) "
        "to the commands topic, keyed by its account, and prints the reply as JSON. A missing "
        "command_id is generated and printed on standard error; send the same command_id again "
        "to retry safely. Exits 0 when accepted or duplicate, 1 when rejected or unanswered in "
        "time, 2 when the command is invalid.",
    )
    send.add_argument("file", metavar="COMMAND.json", help="the command, or - for stdin")
    _reply_timeout(send, "the reply")
    send.set_defaults(handler=_cmd_send)

    demo = commands.add_parser(
        "demo",
        help="drive a realistic scenario through Kafka and print each answer",
        description="Sends one user's life on the demo catalog through Kafka (sign up, spend, "
        "a refused purchase, an upgrade, a purchase, a hold and its capture, an overspend, a "
        "refund, a retry) and prints each reply with the credits available. Needs a running "
        "ledger (`make run`) on domain/catalogs/demo.toml. Exits 0 when every answer is the "
        "expected one, 1 otherwise.",
    )
    demo.add_argument(
        "--account-id", help="the account to create (default: demo-<random>); must be new"
    )
    _reply_timeout(demo, "each reply")
    demo.set_defaults(handler=_cmd_demo)

    payment_commands = _group(
        commands,
        "payments",
        "inspect the payments sent to the ledger",
        "Inspect the Stripe payments the payment consumer sent to the ledger (docs/PAYMENTS.md).",
    )
    unapplied = payment_commands.add_parser(
        "unapplied",
        help="payments that gave no credits: refused (refunded or not) or awaiting a reply",
        description="Lists the payments whose purchase the ledger has not granted, oldest "
        "first: awaiting_reply (sent, no answer yet), refund_pending, refunded (the ledger "
        "refused it and the money went back), refund_failed (refused, and Stripe did not "
        "refund it: act by hand). Each with its account, the ledger's refusal code and the "
        "refund.",
    )
    unapplied.add_argument(
        "--state",
        action="append",
        choices=[s.value for s in PaymentState if s != PaymentState.APPLIED],
        help="only this state (repeatable; default: every state but applied)",
    )
    unapplied.add_argument(
        "--limit", type=int, default=100, help="at most this many (default 100, at most 1000)"
    )
    unapplied.set_defaults(handler=_cmd_payments_unapplied)
    key_commands = _group(
        commands,
        "keys",
        "manage API keys",
        "Create, list and revoke the API keys of the HTTP API (docs/API.md). PostgreSQL keeps "
        "only a hash of each key.",
    )
    key_create = key_commands.add_parser(
        "create",
        help="create a key and print it (once)",
        description="Creates an API key with one scope and prints it on standard output; it "
        "is not stored and cannot be shown again. Scopes: read (account reads), write (read, "
        "and consume, reserve, capture, release), admin (write, and every other command, "
        "portal tokens, checkout), ops (operator reads only).",
    )
    key_create.add_argument("--name", required=True, help="who or what holds the key")
    key_create.add_argument(
        "--scope", required=True, choices=[s.value for s in api_keys.Scope], help="its scope"
    )
    key_create.set_defaults(handler=_cmd_keys_create)
    key_list = key_commands.add_parser(
        "list",
        help="list keys (ids, scopes, names; never the keys)",
        description="Lists every key: its id, scope, creation and revocation times, and name.",
    )
    key_list.set_defaults(handler=_cmd_keys_list)
    key_revoke = key_commands.add_parser(
        "revoke",
        help="revoke a key; refused from the next request on",
        description="Revokes the key with this id (the part after ck_ and before the dot). "
        "Every API instance refuses it from its next request. Exits 1 when no active key "
        "has that id.",
    )
    key_revoke.add_argument("key_id", help="the key id, as `credits keys list` shows it")
    key_revoke.set_defaults(handler=_cmd_keys_revoke)

    openapi = commands.add_parser(
        "openapi",
        help="print the HTTP API's OpenAPI document",
        description="Prints the OpenAPI document that the API serves at /openapi.json "
        "(`credits openapi > docs/openapi.json` refreshes the repository's copy).",
    )
    openapi.set_defaults(handler=_cmd_openapi)

    simulate.add_command(commands)
    return parser


def _reply_timeout(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"how long to wait for {what} (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )


def _group(commands: Any, name: str, help: str, description: str) -> Any:
    """A command with actions of its own (`credits NAME ACTION`)."""
    group = commands.add_parser(name, help=help, description=description)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    handler = args.handler
    result: int = handler(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
