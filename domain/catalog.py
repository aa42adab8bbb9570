"""The catalog: credit types, plans, allocations, costs, limits, packs, top-ups and policies.

One TOML file per product (see `domain/catalogs/` and docs/DOMAIN.md for every key). It is
validated in full at start: a bad catalog raises `CatalogError` naming the key path and what is
wrong, so a service never starts on a catalog it would misprice with.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain.errors import ErrorCode, LedgerError
from domain.fields import (
    MAX_AMOUNT,
    Cents,
    Credits,
    Currency,
    Name,
    PositiveCents,
    PositiveCredits,
    Priority,
)
from domain.periods import PeriodKind

LotSource = Literal[
    "allocation", "purchase", "top_up", "promotional", "trial", "admin", "migration"
]
PAID_SOURCES: frozenset[str] = frozenset({"purchase", "top_up"})

# Lower burns first: the period allocation before anything else (seeds 000, 002), gifts before
# what the customer paid for.
DEFAULT_PRIORITIES: dict[str, int] = {
    "allocation": 10,
    "trial": 20,
    "promotional": 30,
    "migration": 40,
    "admin": 50,
    "purchase": 60,
    "top_up": 60,
}


class CatalogError(ValueError):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"catalog: {path}: {problem}")
        self.path = path
        self.problem = problem


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CreditType(_Strict):
    unit: str = Field(min_length=1, max_length=64)
    description: str = ""
    # Fires `low_balance` when available drops to or below this (seed 003: warn at <= 5).
    low_balance_threshold: Credits | None = None
    # 0 = never negative; -N lets spends overdraw by N, repaid from the next credits added.
    overdraft_floor: Annotated[int, Field(le=0, ge=-MAX_AMOUNT)] = 0
    # What a refund does to credits of the refunded lot that were already spent.
    refund_policy: Literal["forgive", "debt"] = "forgive"
    # Plans that may buy this credit type (packs, amount purchases, top-ups). Empty: nobody.
    buyers: list[Name] = []
    # Plans that may spend purchased lots of this type; None: every plan (seed 000: not free).
    spenders: list[Name] | None = None


class Action(_Strict):
    credit_type: Name
    # Default cost per unit of quantity; 0 makes the action free but still counted as usage.
    cost: Credits
    # Labels for usage breakdowns, e.g. ai / non_ai (seed 000).
    tags: list[Name] = []
    # Default cap on the quantity per UTC day; None: no cap.
    daily_limit: PositiveCredits | None = None
    # The most one use may take (an LLM call's maximum output tokens, say): what a `reserve`
    # without a quantity holds. None: such a reserve holds one unit.
    max_quantity: PositiveCredits | None = None


class Allocation(_Strict):
    amount: Credits
    period: PeriodKind
    renewal: Literal["reset", "add", "rollover"] = "reset"
    # With rollover: the most unused credits carried into the next period.
    rollover_cap: Credits | None = None

    @model_validator(mode="after")
    def _cap_iff_rollover(self) -> Allocation:
        if (self.renewal == "rollover") != (self.rollover_cap is not None):
            raise ValueError("rollover_cap is required with renewal = 'rollover' and only then")
        return self


class PurchaseRate(_Strict):
    """Amount-based purchase: `credits` for every `per_cents` paid, rounded down."""

    credits: PositiveCredits
    per_cents: PositiveCents
    min_cents: PositiveCents
    max_cents: PositiveCents | None = None

    @model_validator(mode="after")
    def _min_below_max(self) -> PurchaseRate:
        if self.max_cents is not None and self.max_cents < self.min_cents:
            raise ValueError("max_cents is below min_cents")
        return self


class AutoTopUp(_Strict):
    threshold: Credits
    amount: PositiveCredits
    max_per_month: Annotated[int, Field(ge=1, le=1000)]


class TopUp(_Strict):
    price_per_credit_cents: PositiveCents
    min_credits: PositiveCredits
    max_credits: PositiveCredits
    # The most auto top-ups per calendar month an account may configure.
    max_per_month_limit: Annotated[int, Field(ge=1, le=1000)] = 31
    # When set, accounts on this plan start with auto top-up on with these settings.
    auto: AutoTopUp | None = None

    @model_validator(mode="after")
    def _bounds(self) -> TopUp:
        if self.max_credits < self.min_credits:
            raise ValueError("max_credits is below min_credits")
        if self.auto is not None:
            if not self.min_credits <= self.auto.amount <= self.max_credits:
                raise ValueError("auto.amount is outside min_credits..max_credits")
            if self.auto.max_per_month > self.max_per_month_limit:
                raise ValueError("auto.max_per_month is above max_per_month_limit")
        return self


class TrialGrant(_Strict):
    amount: PositiveCredits
    expires_after_days: Annotated[int, Field(ge=1, le=36500)] | None = None


class Plan(_Strict):
    name: str = ""
    price_cents: Cents = 0
    # Currency of the plan's purchases and top-ups; None: the catalog's currency.
    currency: Currency | None = None
    allocations: dict[Name, Allocation] = {}
    # Per-plan cost of an action, overriding the action's default cost.
    costs: dict[Name, Credits] = {}
    # Per-plan daily cap of an action, overriding the action's default.
    daily_limits: dict[Name, PositiveCredits] = {}
    # Cap on the quantity consumed per `resource` per UTC day, all actions together (seed 000).
    resource_daily_limit: PositiveCredits | None = None
    purchase: dict[Name, PurchaseRate] = {}
    top_up: dict[Name, TopUp] = {}
    # Granted once when an account opens on this plan (seed 003: free trial).
    trial: dict[Name, TrialGrant] = {}


class Pack(_Strict):
    name: str = ""
    credit_type: Name
    amount: PositiveCredits
    price_cents: Cents
    currency: Currency | None = None
    # Plans that may buy it; None: the credit type's buyers.
    plans: list[Name] | None = None
    expires_after_days: Annotated[int, Field(ge=1, le=36500)] | None = None


class Migration(_Strict):
    """A legacy tier table (seed 003): `migrate` grants `tiers[tier]` credits once."""

    credit_type: Name
    tiers: dict[Name, PositiveCredits]


class Catalog(_Strict):
    version: str = Field(min_length=1, max_length=64)
    name: str = ""
    currency: Currency = "usd"
    max_hold_ttl_seconds: Annotated[int, Field(ge=1, le=31 * 86400)] = 7 * 86400
    # Open holds per account: a client that never captures nor releases cannot pile them up.
    max_open_holds: Annotated[int, Field(ge=1, le=100_000)] = 1000
    # Where a failed top-up sends the customer to pay by hand, unless the payment side says.
    recovery_url: str | None = None
    priorities: dict[LotSource, Priority] = {}
    credit_types: dict[Name, CreditType]
    actions: dict[Name, Action] = {}
    plans: dict[Name, Plan]
    packs: dict[Name, Pack] = {}
    migration: Migration | None = None

    def require_credit_type(self, name: str) -> CreditType:
        """The credit type, or `invalid_command` for a name this catalog does not have."""
        spec = self.credit_types.get(name)
        if spec is None:
            raise LedgerError(ErrorCode.invalid_command, f"no credit type {name!r} in the catalog")
        return spec

    def priority_of(self, source: LotSource) -> int:
        return self.priorities.get(source, DEFAULT_PRIORITIES[source])

    def currency_of(self, plan: str) -> str:
        return self.plans[plan].currency or self.currency

    def pack_currency(self, pack: Pack) -> str:
        return pack.currency or self.currency

    def cost_of(self, plan: str, action: str) -> int:
        return self.plans[plan].costs.get(action, self.actions[action].cost)

    def daily_limit_of(self, plan: str, action: str) -> int | None:
        return self.plans[plan].daily_limits.get(action, self.actions[action].daily_limit)

    def may_buy(self, plan: str, credit_type: str) -> bool:
        return plan in self.credit_types[credit_type].buyers

    def may_buy_pack(self, plan: str, pack: Pack) -> bool:
        if pack.plans is not None:
            return plan in pack.plans
        return self.may_buy(plan, pack.credit_type)

    def may_spend_purchased(self, plan: str, credit_type: str) -> bool:
        spenders = self.credit_types[credit_type].spenders
        return spenders is None or plan in spenders


def parse_catalog(text: str) -> Catalog:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CatalogError("<toml>", str(e)) from None
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        path = ".".join(str(part) for part in first["loc"]) or "<root>"
        raise CatalogError(path, first["msg"]) from None
    _check_references(catalog)
    return catalog


def load_catalog(path: str | Path) -> Catalog:
    return parse_catalog(Path(path).read_text(encoding="utf-8"))


def _check_references(catalog: Catalog) -> None:
    credit_types = catalog.credit_types
    plans = catalog.plans

    def credit_type(path: str, name: str) -> None:
        if name not in credit_types:
            raise CatalogError(path, f"unknown credit type {name!r}")

    def plan(path: str, name: str) -> None:
        if name not in plans:
            raise CatalogError(path, f"unknown plan {name!r}")

    if not plans:
        raise CatalogError("plans", "at least one plan is required")
    for ct_name, ct in credit_types.items():
        for i, buyer in enumerate(ct.buyers):
            plan(f"credit_types.{ct_name}.buyers.{i}", buyer)
        for i, spender in enumerate(ct.spenders or []):
            plan(f"credit_types.{ct_name}.spenders.{i}", spender)
    for action_name, action in catalog.actions.items():
        credit_type(f"actions.{action_name}.credit_type", action.credit_type)
    for plan_name, p in plans.items():
        at = f"plans.{plan_name}"
        for ct_name in p.allocations:
            credit_type(f"{at}.allocations.{ct_name}", ct_name)
        for table in ("costs", "daily_limits"):
            for action_name in getattr(p, table):
                if action_name not in catalog.actions:
                    raise CatalogError(f"{at}.{table}.{action_name}", "unknown action")
        for table in ("purchase", "top_up"):
            for ct_name in getattr(p, table):
                credit_type(f"{at}.{table}.{ct_name}", ct_name)
                if plan_name not in credit_types[ct_name].buyers:
                    raise CatalogError(
                        f"{at}.{table}.{ct_name}",
                        f"plan {plan_name!r} is not in credit_types.{ct_name}.buyers",
                    )
        for ct_name in p.trial:
            credit_type(f"{at}.trial.{ct_name}", ct_name)
    for pack_name, pack in catalog.packs.items():
        credit_type(f"packs.{pack_name}.credit_type", pack.credit_type)
        for i, buyer in enumerate(pack.plans or []):
            plan(f"packs.{pack_name}.plans.{i}", buyer)
    if catalog.migration is not None:
        credit_type("migration.credit_type", catalog.migration.credit_type)
