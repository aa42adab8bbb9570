"""The `credits` command line (DESIGN §2.6). Each subcommand has `--help`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from infra.kafka_topics import create_topics, partition_counts
from infra.logs import configure_logging
from infra.settings import Settings
from services.runner import COMPONENTS, run_components


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    names = list(COMPONENTS) if args.component == "all" else [args.component]
    asyncio.run(run_components(names, settings))
    return 0


def _cmd_topics_create(_: argparse.Namespace, settings: Settings) -> int:
    async def create_and_describe() -> tuple[dict[str, str], dict[str, int]]:
        outcome = await create_topics(settings)
        return outcome, await partition_counts(settings, list(outcome))

    outcome, counts = asyncio.run(create_and_describe())
    for name, state in outcome.items():
        print(f"{name}\t{state}\tpartitions={counts.get(name, '?')}")
    return 0


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    handler = args.handler
    result: int = handler(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
