"""`credits run` and `credits topics`: running the components and creating their topics."""

from __future__ import annotations

import argparse
import asyncio

from infra.kafka_topics import create_topics, partition_counts
from infra.settings import Settings
from services.cli.parsing import Commands
from services.cli.supervisor import COMPONENTS, run_process


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


def add_commands(commands: Commands) -> None:
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
