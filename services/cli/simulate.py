"""`credits simulate`: a scenario run on a simulated clock through the real domain, in memory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tqdm import tqdm

from domain.catalog import CatalogError, load_catalog
from infra.settings import Settings
from services.simulation.chart import svg_chart, table
from services.simulation.run import Simulation
from services.simulation.scenario import ScenarioError, load_scenario


def add_commands(commands: Any) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="run a catalog over simulated days and print the balances per day",
        description="Runs SCENARIO (TOML: accounts, plans, daily use, commands on given days) "
        "through the real ledger rules on a simulated clock, in memory (no server needed), and "
        "prints each day's balances. Example scenarios: domain/catalogs/scenarios/. Exits 1 "
        "when the scenario states expected end balances and they differ.",
    )
    simulate.add_argument("scenario", type=Path, help="the scenario file (TOML)")
    simulate.add_argument(
        "--catalog", type=Path, help="the catalog to run (default: the one the scenario names)"
    )
    simulate.add_argument(
        "--svg", type=Path, help="also write the balances as an SVG line chart to this file"
    )
    simulate.set_defaults(handler=run_simulate)


def run_simulate(args: argparse.Namespace, settings: Settings) -> int:
    try:
        scenario = load_scenario(args.scenario)
        catalog = load_catalog(args.catalog or scenario.catalog_path(args.scenario))
    except (ScenarioError, CatalogError, OSError) as e:
        print(f"error: {e}")
        return 2
    with tqdm(total=scenario.days, unit="day", leave=False, disable=None) as bar:
        result = Simulation(scenario, catalog).run(on_day=lambda _: bar.update())
    print(f"catalog {catalog.version}, {scenario.days} days from {scenario.start:%Y-%m-%d}")
    print(table(result))
    for (account, command, code), count in sorted(result.refusals.items()):
        print(f"refused: {account} {command} {code}, {count} times")
    if args.svg is not None:
        args.svg.write_text(svg_chart(result, f"{catalog.name}: available per day"))
        print(f"chart: {args.svg}")
    final = result.final()
    wrong = [
        f"{account} {credit_type}: expected {expected}, got {got}"
        for account, expected_types in scenario.expect.items()
        for credit_type, expected in expected_types.items()
        if (got := final.get(account, {}).get(credit_type)) != expected
    ]
    for line in wrong:
        print(f"MISMATCH {line}")
    return 1 if wrong else 0
