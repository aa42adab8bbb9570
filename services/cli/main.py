"""The `credits` command line (DESIGN §2.6): one module per command group, each adding its
commands to the parser here. Each command and action has `--help`."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from infra.logs import configure_logging
from infra.settings import Settings
from infra.tracing import configure_tracing
from services.cli import (
    components,
    contracts,
    dlq,
    keys,
    payments,
    projections,
    reconcile,
    sending,
    simulate,
)

DISTRIBUTION = "credits-ledger"
# In the order `credits --help` lists them.
GROUPS = (components, projections, reconcile, sending, simulate, payments, keys, dlq, contracts)


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's, once installed)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="credits",
        description="Event-sourced credit ledger: run its components and operate it.",
        epilog="Settings come from CREDITS_* environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in GROUPS:
        module.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    component = (
        ("all" if args.component == "all" else args.component) if args.command == "run" else "cli"
    )
    configure_logging(
        settings.log_level,
        settings.log_format,
        secrets=settings.secret_values(),
        component=component,
    )
    if args.command == "run":
        configure_tracing(component)
    result: int = args.handler(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
