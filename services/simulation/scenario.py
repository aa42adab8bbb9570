"""A simulation scenario (TOML): accounts on plans, what they do each day, commands on given
days, and optionally the balances expected at the end (the seed scenarios' tests check them).

    catalog = "seed_004_docweb.toml"      # beside domain/catalogs/, unless --catalog is given
    start = 2026-01-05T09:00:00Z
    days = 45

    [[accounts]]
    id = "writer"
    plan = "pro"
    daily = [{ action = "generate", count = 12 }]
    commands = [{ day = 20, type = "change_plan", plan = "max" }]

    [expect.writer]
    credits = 40
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from domain.fields import Identifier, Name

# A limit on everything: a scenario is for seeing a catalog at work, not a load test.
MAX_DAYS = 3660
MAX_ACCOUNTS = 100
MAX_DAILY_COUNT = 10_000
MAX_COMMANDS_PER_ACCOUNT = 1000

SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "domain" / "catalogs" / "scenarios"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DailyUse(_Strict):
    """`count` consumes of `action`, one unit each, every `every_days` days within the range."""

    action: Name
    count: Annotated[int, Field(ge=1, le=MAX_DAILY_COUNT)]
    every_days: Annotated[int, Field(ge=1, le=MAX_DAYS)] = 1
    from_day: Annotated[int, Field(ge=0, le=MAX_DAYS)] = 0
    until_day: Annotated[int, Field(ge=0, le=MAX_DAYS)] = MAX_DAYS
    # Per unit consumed; the resource (e.g. one QR code) for plans with a daily limit.
    resource: Identifier | None = None

    def on(self, day: int) -> bool:
        return (
            self.from_day <= day <= self.until_day and (day - self.from_day) % self.every_days == 0
        )


class DayCommand(_Strict):
    """A command sent on `day` (0 is the start), before that day's use: any ledger command;
    `command_id` and `account_id` are filled in."""

    model_config = ConfigDict(extra="allow", frozen=True)
    day: Annotated[int, Field(ge=0, le=MAX_DAYS)]
    type: Name

    def command(self, account_id: str, command_id: str) -> dict[str, Any]:
        fields = self.model_dump(mode="json", exclude={"day"})
        return {**fields, "account_id": account_id, "command_id": command_id}


class AccountScript(_Strict):
    id: Identifier
    plan: Name
    daily: list[DailyUse] = Field(default_factory=list, max_length=32)
    commands: list[DayCommand] = Field(default_factory=list, max_length=MAX_COMMANDS_PER_ACCOUNT)


class Scenario(_Strict):
    catalog: str
    start: AwareDatetime
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)]
    accounts: list[AccountScript] = Field(min_length=1, max_length=MAX_ACCOUNTS)
    # account id → credit type → `available` at the end.
    expect: dict[str, dict[str, int]] = Field(default_factory=dict)

    def catalog_path(self, scenario_path: Path) -> Path:
        """The catalog named by the scenario: beside the scenario's folder's parent (the seed
        catalogs' folder), or relative to the scenario file."""
        for base in (scenario_path.parent.parent, scenario_path.parent):
            if (base / self.catalog).is_file():
                return base / self.catalog
        raise ScenarioError(f"catalog {self.catalog!r} not found beside {scenario_path}")


class ScenarioError(ValueError):
    """A scenario file that cannot be run: says which and why."""


def load_scenario(path: Path) -> Scenario:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        scenario = Scenario.model_validate(data)
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as e:
        raise ScenarioError(f"{path}: {e}") from None
    if scenario.start.utcoffset() != UTC.utcoffset(datetime.now(UTC)):
        raise ScenarioError(f"{path}: start must be in UTC (Z)")
    return scenario
