"""A bad catalog fails at start, naming the key and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.catalog import CatalogError, load_catalog, parse_catalog

CATALOGS = Path(__file__).resolve().parents[2] / "domain" / "catalogs"

GOOD = """
version = "t-1"
[credit_types.api_calls]
unit = "call"
buyers = ["pro"]
[actions.call]
credit_type = "api_calls"
cost = 1
[plans.pro]
allocations.api_calls = { amount = 1000, period = "month" }
[packs.big]
credit_type = "api_calls"
amount = 10
price_cents = 100
"""


def problem(text: str) -> CatalogError:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text)
    return caught.value


@pytest.mark.parametrize("path", sorted(CATALOGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_catalog_loads(path: Path):
    assert load_catalog(path).version


def test_a_good_catalog_parses():
    catalog = parse_catalog(GOOD)
    assert catalog.plans["pro"].allocations["api_calls"].amount == 1000


def test_a_float_amount_is_refused_naming_its_key():
    error = problem(GOOD.replace("amount = 1000", "amount = 1000.5"))
    assert error.path == "plans.pro.allocations.api_calls.amount"
    assert "integer" in error.problem


def test_a_negative_cost_is_refused_naming_its_key():
    error = problem(GOOD.replace("cost = 1", "cost = -1"))
    assert error.path == "actions.call.cost"


def test_an_unknown_key_is_refused():
    error = problem(GOOD.replace('unit = "call"', 'unit = "call"\ncolour = "red"'))
    assert error.path == "credit_types.api_calls.colour"


def test_an_action_naming_an_unknown_credit_type_is_refused():
    error = problem(GOOD.replace('credit_type = "api_calls"\ncost', 'credit_type = "tokens"\ncost'))
    assert error.path == "actions.call.credit_type"
    assert "unknown credit type 'tokens'" in error.problem


def test_a_pack_for_a_plan_that_does_not_exist_is_refused():
    error = problem(GOOD + 'plans = ["enterprise"]\n')
    assert error.path == "packs.big.plans.0"
    assert "unknown plan 'enterprise'" in error.problem


def test_an_allocation_of_an_unknown_credit_type_is_refused():
    error = problem(GOOD.replace("allocations.api_calls", "allocations.tokens"))
    assert error.path == "plans.pro.allocations.tokens"


def test_rollover_without_a_cap_is_refused():
    error = problem(GOOD.replace('period = "month"', 'period = "month", renewal = "rollover"'))
    assert error.path == "plans.pro.allocations.api_calls"
    assert "rollover_cap" in error.problem


def test_a_period_other_than_day_or_month_is_refused():
    error = problem(GOOD.replace('period = "month"', 'period = "week"'))
    assert error.path == "plans.pro.allocations.api_calls.period"


def test_a_purchase_rate_for_a_plan_that_may_not_buy_is_refused():
    text = GOOD.replace('buyers = ["pro"]', "buyers = []") + (
        "[plans.pro.purchase.api_calls]\ncredits = 1\nper_cents = 1\nmin_cents = 100\n"
    )
    error = problem(text)
    assert error.path == "plans.pro.purchase.api_calls"
    assert "buyers" in error.problem


def test_broken_toml_is_refused():
    assert problem("version = ").path == "<toml>"


def test_the_catalog_version_is_required():
    assert problem(GOOD.replace('version = "t-1"', "")).path == "version"
