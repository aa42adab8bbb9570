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
<<<<<<< HEAD
    result: int = args.handler(args, settings)
=======
    if args.command == "run":
        configure_tracing(component)
    handler = args.handler
    result: int = handler(args, settings)
>>>>>>> 0daad00 (Tracing with OpenTelemetry: an HTTP command's or a Kafka command's W3C traceparent goes through the ledger (a span per traced command) to its reply's headers and, stored with the command's receipt (a nullable column, added to existing tables), to the CloudEvents the relay publishes (traceparent attribute, a relay span per event); webhooks put the request's trace on stripe.events and the payment consumer on the commands it sends. The SDK and OTLP exporter load only when OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_ENDPOINT ask; FastAPI's own telemetry is off (it records query strings). The ledger's command log line carries the trace id. Tests: one trace from an HTTP command through the ledger to the relay (in-memory exporter); a Stripe event's trace on the commands payments sends)
    return result


if __name__ == "__main__":
    sys.exit(main())
