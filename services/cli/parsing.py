"""What every `credits` command group uses to declare itself on the parser."""

from __future__ import annotations

import argparse
from typing import Any

from credits_client.client import DEFAULT_TIMEOUT_SECONDS

# What `add_subparsers` returns: argparse keeps its class private.
Commands = Any


def group(commands: Commands, name: str, help: str, description: str) -> Commands:
    """A command with actions of its own (`credits NAME ACTION`)."""
    parser = commands.add_parser(name, help=help, description=description)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def reply_timeout(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"how long to wait for {what} (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )


def bounded_int(low: int, high: int) -> Any:
    """An argparse type: an integer in [low, high], refused with a usage error otherwise."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{number} is not in {low}..{high}")
        return number

    return parse
