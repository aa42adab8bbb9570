"""The field types every part of the domain shares: names, identifiers, credits, money.

As pydantic `Annotated` types they validate where data comes in (the catalog, the commands);
on the events and the value objects, where nothing is validated any more, they say what a
field holds (type checkers see plain `str` and `int`). domain/commands.py still defines its own
copies (`Amount` there is `PositiveCredits` here) until it switches to this module.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from pydantic import Field

# Integers only; the bound keeps every amount exact in JSON (2**53) and in a PostgreSQL bigint.
MAX_AMOUNT = 10**15
MAX_QUANTITY = 1_000_000

# Credit types, actions, plans, packs, tiers, tags.
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
# Ids chosen by callers: accounts, holds, top-ups, resources.
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]
CommandId = Annotated[str, Field(min_length=1, max_length=128)]
# Payment references and free-form references of grants.
Reference = Annotated[str, Field(min_length=1, max_length=256)]
# Ids the account gives: `lot-N`, `tu-N`.
LotId = str
TopUpId = str

# Credits in the credit type's base unit.
Credits = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
PositiveCredits = Annotated[int, Field(ge=1, le=MAX_AMOUNT)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
# Money in minor units, with a lower-case ISO 4217 code beside it.
Cents = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
PositiveCents = Annotated[int, Field(ge=1, le=MAX_AMOUNT)]
Currency = Annotated[str, Field(pattern=r"^[a-z]{3}$")]
# Burn order: lower first.
Priority = Annotated[int, Field(ge=0, le=1000)]


class Part(TypedDict):
    """One lot a spend or a hold drew from, and how much."""

    lot_id: LotId
    amount: int


# Which lots a spend drew from, in burn order: what events, holds and replies carry.
Breakdown = list[Part]


def total(breakdown: Breakdown) -> int:
    return sum(part["amount"] for part in breakdown)
