"""`python -m contracts.asyncapi [--check] [--output PATH]`: writes docs/asyncapi.json,
or with --check exits 1 if the file differs from what the code generates now."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.asyncapi.document import render
from infra.settings import PROJECT_DIR

DEFAULT_OUTPUT = PROJECT_DIR / "docs" / "asyncapi.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.asyncapi")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    current = args.output.read_text() if args.output.exists() else None
    if args.check:
        if current != text:
            print(f"{args.output} is stale: run python -m contracts.asyncapi")
            return 1
        return 0
    if current != text:
        args.output.write_text(text)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
