"""`credits openapi`: the HTTP API's contract, printed."""

from __future__ import annotations

import argparse
import sys

from infra.settings import Settings
from services.cli.parsing import Commands


def _cmd_openapi(_: argparse.Namespace, __: Settings) -> int:
    from contracts.openapi import openapi_document, render

    sys.stdout.write(render(openapi_document()))
    return 0


def add_commands(commands: Commands) -> None:
    openapi = commands.add_parser(
        "openapi",
        help="print the HTTP API's OpenAPI document",
        description="Prints the OpenAPI document that the API serves at /openapi.json "
        "(`credits openapi > docs/openapi.json` refreshes the repository's copy).",
    )
    openapi.set_defaults(handler=_cmd_openapi)
