"""`python -m bench` (`make bench`): every benchmark on the local stack, printed as one table.

Runs in a database and topics of its own (dropped and recreated each run), so figures never
include another run's data and the service's own database is untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import uuid

from bench.database import BENCH_DATABASE, recreate_database
from bench.kafka_roundtrip import roundtrip_rows
from bench.ledger_kafka import ledger_rows
from bench.machine_speed import machine_speed_row
from bench.payments_webhook import payment_rows
from bench.pgbench import pgbench_rows
from bench.portal_page import portal_rows
from bench.projection_lag import projection_lag_rows
from bench.rebuild import run as rebuild_rows
from bench.rows import BenchRow, meets, write_json
from bench.two_ledgers import two_ledger_rows
from infra.kafka_topics import create_topics, delete_topics
from infra.logs import configure_logging
from infra.settings import PROJECT_DIR, Settings


def _print_table(rows: list[BenchRow]) -> None:
    headers = ("benchmark", "value", "unit", "target", "met", "note")
    cells = [(r.name, f"{r.value:,.1f}", r.unit, r.target, meets(r), r.note) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cell in cells:
        print(
            "| "
            + " | ".join(
                c.rjust(w) if i == 1 else c.ljust(w)
                for i, (c, w) in enumerate(zip(cell, widths, strict=True))
            )
            + " |"
        )


PHASES = ("pgbench", "kafka", "ledger", "payments", "portal", "rebuild")


async def main(phases: tuple[str, ...] = PHASES) -> list[BenchRow]:
    base = Settings()
    settings = base.model_copy(
        update={"pg_database": BENCH_DATABASE, "topic_prefix": f"bench-{uuid.uuid4().hex[:6]}."}
    )
    rows: list[BenchRow] = [machine_speed_row("at the start")]
    if "pgbench" in phases:
        await recreate_database(base)
        rows += await asyncio.to_thread(pgbench_rows, settings)
    if "kafka" in phases:
        rows += await roundtrip_rows(settings)
    if "ledger" in phases:
        await recreate_database(base)
        await create_topics(settings)
        try:
            rows += await ledger_rows(settings)
            # Each with processes of its own, after the one-ledger rows: those stay comparable
            # with earlier runs (no projector or second ledger beside them).
            rows += await projection_lag_rows(settings)
            rows += await two_ledger_rows(settings)
        finally:
            await delete_topics(settings, settings.all_topics())
    if "payments" in phases:
        await recreate_database(base)
        await create_topics(settings)
        try:
            rows += await payment_rows(settings)
        finally:
            await delete_topics(settings, settings.all_topics())
    if "portal" in phases:
        await recreate_database(base)
        rows += await portal_rows(settings)
    if "rebuild" in phases:
        await recreate_database(base)
        rows += await rebuild_rows(settings)
    rows.append(machine_speed_row("at the end"))
    return rows


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Every benchmark on the local stack (make stack), printed as one table.",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PHASES,
        default=list(PHASES),
        help="run only these benchmarks (default: all, in this order)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    # SIGTERM (make interrupted, a timeout) unwinds like Ctrl-C, so the ledger process it
    # started is stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    arguments = _arguments()
    # Warnings only: the portal phase runs the API in this process, and a line per request
    # would bury the table (the processes it starts log at WARNING too).
    configure_logging("WARNING", Settings().log_format, component="bench")
    table = asyncio.run(main(tuple(arguments.only)))
    _print_table(table)
    print(f"written to {write_json(table, PROJECT_DIR / '.local' / 'bench')}")
    sys.exit(0)
