"""The demo's scenario on the in-memory ledger: every answer is the one the demo expects."""

from __future__ import annotations

from pathlib import Path

from credits_client import CreditsClient

from domain.account import Account
from domain.catalog import load_catalog
from services.cli.demo import DEMO_CATALOG_VERSION, SCENARIO, run_demo
from tests.client.conftest import InMemoryLedgerWire


async def test_every_step_is_answered_as_the_demo_expects(
    offline: tuple[CreditsClient, InMemoryLedgerWire],
) -> None:
    client, wire = offline

    run = await run_demo(client, "demo-unit")

    assert run.as_expected and len(run.outcomes) == len(SCENARIO)
    available = [o.credits_available or 0 for o in run.outcomes]
    assert all(o.credits_available is not None for o in run.outcomes)
    bought, reserved, captured, refunded = available[6], available[7], available[8], available[10]
    assert bought - available[5] == 100, "$5 buys 100 credits on Starter"
    assert (reserved, captured) == (bought - 10, bought - 6), "the 4 not captured come back"
    assert refunded == captured - 100, "the refund takes the purchased credits back"
    events = wire.ledger.events("demo-unit")
    lookups = [e for e in events if isinstance(e, Account.Consumed) and e.action == "lookup"]
    assert len(lookups) == 1, "the retried lookup is not applied twice"


def test_the_demo_names_the_catalog_it_was_written_for() -> None:
    demo = Path(__file__).resolve().parents[2] / "domain" / "catalogs" / "demo.toml"
    assert load_catalog(demo).version == DEMO_CATALOG_VERSION
