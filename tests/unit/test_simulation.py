"""`credits simulate`: each seed catalog's example scenario runs through the real rules on a
simulated clock and ends with the balances its comments work out by hand."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from domain.catalog import load_catalog
from services.cli.main import main
from services.simulation.run import Simulation
from services.simulation.scenario import SCENARIOS_DIR, load_scenario

SCENARIOS = sorted(SCENARIOS_DIR.glob("*.toml"))


def test_every_seed_catalog_ships_a_scenario() -> None:
    catalogs = {p.stem for p in SCENARIOS_DIR.parent.glob("seed_*.toml")}
    assert {p.stem for p in SCENARIOS} == catalogs


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_a_seed_scenario_ends_with_the_balances_worked_out_by_hand(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.expect, "every seed scenario states its end balances"
    result = Simulation(scenario, load_catalog(scenario.catalog_path(path))).run()
    assert len(result.days) == scenario.days
    final = result.final()
    for account, balances in scenario.expect.items():
        assert {t: final[account][t] for t in balances} == balances, account
    assert not result.refusals, "the scripted commands are all accepted"


def test_time_moves_renewals_resets_and_expiries_without_any_command_of_their_own() -> None:
    path = SCENARIOS_DIR / "seed_001_stripe_credits.toml"
    scenario = load_scenario(path)
    days = Simulation(scenario, load_catalog(scenario.catalog_path(path))).run().days
    by_date = {day.date: day.available["acme"]["api_calls"] for day in days}
    # The 500 promotional calls expire unused on Jan 25; the monthly 1,000 is added on Feb 5.
    assert by_date["2026-01-24"] - 25 - by_date["2026-01-25"] == 500
    assert by_date["2026-02-05"] - by_date["2026-02-04"] == 1000 - 25


def test_the_command_prints_each_day_writes_a_chart_and_checks_expectations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], logging_restored: None
) -> None:
    svg = tmp_path / "chart.svg"
    status = main(["simulate", str(SCENARIOS_DIR / "seed_004_docweb.toml"), "--svg", str(svg)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "day  13 2026-01-18" in printed and "writer: credits=92" in printed
    assert "2 refused" in printed, "the free reader's refusals are shown"
    lines = ET.parse(svg).getroot().findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 1, "one line: the writer's credits (the reader's stays at 0)"
    assert len(lines[0].get("points", "").split()) == 14

    wrong = tmp_path / "wrong.toml"
    text = (SCENARIOS_DIR / "seed_004_docweb.toml").read_text()
    wrong.write_text(text.replace("credits = 92", "credits = 93"))
    (tmp_path.parent / "seed_004_docweb.toml").write_text(
        (SCENARIOS_DIR.parent / "seed_004_docweb.toml").read_text()
    )
    assert main(["simulate", str(wrong)]) == 1
    assert "MISMATCH writer credits: expected 93, got 92" in capsys.readouterr().out


def test_a_scenario_with_an_unknown_field_is_refused_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], logging_restored: None
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('catalog = "x.toml"\nstart = 2026-01-01T00:00:00Z\ndays = 3\nwhat = 1\n')
    assert main(["simulate", str(bad)]) == 2
    assert "what" in capsys.readouterr().out
