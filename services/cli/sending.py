"""`credits send` and `credits demo`: clients of the ledger like any producer service."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

from credits_client import CreditsClient
from credits_client.errors import CommandTimeout, InvalidCommand

from domain.replies import Reply
from infra.settings import Settings, Topic
from services.cli.demo import DEMO_CATALOG_VERSION, SCENARIO, DemoRun, Outcome, run_demo
from services.cli.parsing import Commands, reply_timeout

CLI_CLIENT_ID = "credits-cli"


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


def add_commands(commands: Commands) -> None:
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
    reply_timeout(send, "the reply")
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
    reply_timeout(demo, "each reply")
    demo.set_defaults(handler=_cmd_demo)
