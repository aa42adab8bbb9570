"""The commands of DESIGN §2.2, and the few the design implies (see docs/DOMAIN.md).

Strict: integers only (a float or a bool where an integer belongs is refused), unknown fields
refused, every string and map bounded. Every string is checked `CARRIABLE`: what PostgreSQL
and JSON can carry, so a command that is accepted can be stored, answered and projected (a NUL
character cannot go into a PostgreSQL text column, a lone surrogate cannot be encoded as UTF-8).
`parse_command` turns any refusal into `LedgerError(invalid_command)` whose message names the
field. Every door (Kafka, HTTP, Stripe metadata) parses commands with it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from domain.catalog import MAX_AMOUNT
from domain.errors import ErrorCode, LedgerError

MAX_COMMAND_BYTES = 16 * 1024
MAX_METADATA_BYTES = 4 * 1024
MAX_QUANTITY = 1_000_000


def _carriable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must not contain lone surrogates (it is not UTF-8)") from None
    return value


# Every string field of a command ends with this check (after its length and pattern, which
# then stay in the JSON Schema; patterns that exclude both characters are checked again).
CARRIABLE = AfterValidator(_carriable)
Identifier = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$"), CARRIABLE
]
CommandId = Annotated[str, Field(min_length=1, max_length=128), CARRIABLE]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$"), CARRIABLE]
Amount = Annotated[int, Field(ge=1, le=MAX_AMOUNT)]
Cents = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
Reference = Annotated[str, Field(min_length=1, max_length=256), CARRIABLE]
MetadataKey = Annotated[str, Field(min_length=1, max_length=64), CARRIABLE]
MetadataValue = Annotated[str, Field(max_length=512), CARRIABLE] | int | None


# Byte for byte what `json.dumps(..., sort_keys=True, separators=(",", ":"))` writes (stored
# receipts hash it), built once: `json.dumps` with options builds an encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    command_id: CommandId
    account_id: Identifier

    def canonical_json(self) -> str:
        """The payload a receipt hashes: field order and defaults never make two retries differ."""
        return _CANONICAL.encode(self.model_dump(mode="json"))

    def payload_sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


class _Priced(BaseModel):
    """`action` (priced by the catalog) or (`credit_type`, `amount`), times `quantity`."""

    action: Name | None = None
    credit_type: Name | None = None
    amount: Amount | None = None
    quantity: Quantity = 1
    resource: Identifier | None = None

    @model_validator(mode="after")
    def _action_or_amount(self) -> Any:
        by_action = self.action is not None and self.credit_type is None and self.amount is None
        by_amount = self.action is None and self.credit_type is not None and self.amount is not None
        if not (by_action or by_amount):
            raise ValueError("give either action, or credit_type and amount")
        return self


class OpenAccount(_Command):
    type: Literal["open_account"]
    plan: Name


class ChangePlan(_Command):
    type: Literal["change_plan"]
    plan: Name
    effective: Literal["now", "next_period"] = "now"


class Consume(_Priced, _Command):
    type: Literal["consume"]
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict, max_length=32)

    @field_validator("metadata")
    @classmethod
    def _metadata_bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
        return value


class Reserve(_Priced, _Command):
    type: Literal["reserve"]
    hold_id: Identifier
    ttl_seconds: Annotated[int, Field(ge=1, le=31 * 86400)]
    # None: the action's `max_quantity` (catalog), else 1.
    quantity: Quantity | None = None  # type: ignore[assignment]


class Capture(_Command):
    type: Literal["capture"]
    hold_id: Identifier
    amount: Annotated[int, Field(ge=0, le=MAX_AMOUNT)] | None = None
    # False: a part capture; the hold stays open with the rest (a streaming call billed as it
    # goes). True (default): the hold closes and the rest returns to its lots.
    final: bool = True


class ExtendHold(_Command):
    type: Literal["extend_hold"]
    hold_id: Identifier
    # The new expiry, from now; never brings an expiry forward.
    ttl_seconds: Annotated[int, Field(ge=1, le=31 * 86400)]


class SetResourceLimit(_Command):
    """Added: the account's own daily limit on one resource (a QR code, say), within the plan's
    `resource_daily_limit`; `daily_limit` null clears it (the plan's cap applies again)."""

    type: Literal["set_resource_limit"]
    resource: Identifier
    # Required, so a command that forgets it does not clear a limit; 0 stops the resource.
    daily_limit: Annotated[int, Field(ge=0, le=MAX_AMOUNT)] | None


class Release(_Command):
    type: Literal["release"]
    hold_id: Identifier


class Grant(_Command):
    type: Literal["grant"]
    credit_type: Name
    amount: Amount
    # Paid credits come through `purchase`, allocations through plans: not grantable by hand.
    source: Literal["promotional", "trial", "admin", "migration"]
    expires_at: AwareDatetime | None = None
    priority: Annotated[int, Field(ge=0, le=1000)] | None = None
    reference: Reference | None = None

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


class Purchase(_Command):
    type: Literal["purchase"]
    pack: Name | None = None
    credit_type: Name | None = None
    # Credits: for a pack it is the pack's; for an amount purchase it must equal the catalog
    # conversion of amount_paid; for a top-up it must equal what was requested. May be omitted.
    amount: Amount | None = None
    payment_reference: Reference
    amount_paid: Cents
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$"), CARRIABLE]
    # Set by the payment side when this purchase settles a `top_up_requested`.
    top_up_id: Identifier | None = None

    @field_validator("currency")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @model_validator(mode="after")
    def _pack_or_credit_type(self) -> Purchase:
        if (self.pack is None) == (self.credit_type is None):
            raise ValueError("give either pack or credit_type")
        if self.pack is not None and self.amount is not None:
            raise ValueError("a pack purchase takes its amount from the pack")
        return self


class Revoke(_Command):
    type: Literal["revoke"]
    payment_reference: Reference | None = None
    grant_id: Identifier | None = None
    # Default: all that is left to revoke of the lot.
    amount: Amount | None = None
    reason: Literal["refund", "chargeback", "admin"]

    @model_validator(mode="after")
    def _one_target(self) -> Revoke:
        if (self.payment_reference is None) == (self.grant_id is None):
            raise ValueError("give either payment_reference or grant_id")
        return self


class Renew(_Command):
    type: Literal["renew"]
    period_id: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$"), CARRIABLE]

    @field_validator("period_id")
    @classmethod
    def _a_date(cls, value: str) -> str:
        datetime.strptime(value, "%Y-%m-%d")
        return value


class ConfigureTopUp(_Command):
    type: Literal["configure_top_up"]
    credit_type: Name
    mode: Literal["off", "auto"]
    threshold: Annotated[int, Field(ge=0, le=MAX_AMOUNT)] | None = None
    amount: Amount | None = None
    max_per_month: Annotated[int, Field(ge=1, le=1000)] | None = None

    @model_validator(mode="after")
    def _auto_needs_settings(self) -> ConfigureTopUp:
        settings = (self.threshold, self.amount, self.max_per_month)
        if self.mode == "auto" and None in settings:
            raise ValueError("mode 'auto' needs threshold, amount and max_per_month")
        return self


class RequestTopUp(_Command):
    type: Literal["request_top_up"]
    credit_type: Name
    amount: Amount


class FailTopUp(_Command):
    """Added: the payment side could not charge for a `top_up_requested`."""

    type: Literal["fail_top_up"]
    top_up_id: Identifier
    reason: Annotated[str, Field(min_length=1, max_length=256), CARRIABLE]
    recovery_url: (
        Annotated[str, Field(max_length=2048, pattern=r"^https?://"), CARRIABLE] | None
    ) = None


class Expire(_Command):
    """Added: the scheduler's tick. Expires holds and lots and renews periods that are due."""

    type: Literal["expire"]


class Migrate(_Command):
    """Added: grant the catalog's legacy tier amount once (seed 003)."""

    type: Literal["migrate"]
    tier: Name


Command = Annotated[
    OpenAccount
    | ChangePlan
    | Consume
    | Reserve
    | Capture
    | ExtendHold
    | Release
    | Grant
    | Purchase
    | Revoke
    | Renew
    | ConfigureTopUp
    | SetResourceLimit
    | RequestTopUp
    | FailTopUp
    | Expire
    | Migrate,
    Field(discriminator="type"),
]
_COMMAND: TypeAdapter[Command] = TypeAdapter(Command)
# Every command type, as commands name it in `type`.
COMMAND_TYPES: frozenset[str] = frozenset(
    get_args(variant.model_fields["type"].annotation)[0]
    for variant in get_args(get_args(Command)[0])
)


def parse_command(raw: bytes | str | dict[str, Any]) -> Command:
    """Validate a command from JSON (bytes or text) or from an already decoded object."""
    if isinstance(raw, dict):
        try:
            raw = json.dumps(raw)
        except (TypeError, ValueError, RecursionError) as e:
            raise LedgerError(ErrorCode.invalid_command, f"not JSON: {e}") from None
    if _size_bytes(raw) > MAX_COMMAND_BYTES:
        raise LedgerError(
            ErrorCode.invalid_command, f"command is larger than {MAX_COMMAND_BYTES} bytes"
        )
    try:
        return _COMMAND.validate_json(raw)
    except ValidationError as e:
        raise LedgerError(ErrorCode.invalid_command, _describe(e)) from None


def _size_bytes(raw: bytes | str) -> int:
    if isinstance(raw, bytes) or len(raw) > MAX_COMMAND_BYTES:
        return len(raw)  # a character is at least a byte: too large either way
    return len(raw.encode("utf-8", "surrogatepass"))


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = list(first["loc"])
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        location = ["type"]
    elif location and isinstance(location[0], str) and location[0] in _TAGS:
        location = location[1:]  # the union branch, named by `type`, is not a field
    # Union branches (a metadata value is text, an integer or null) are not fields either.
    location = location[:2] + [p for p in location[2:] if not str(p).startswith(_BRANCHES)]
    field = ".".join(_quotable(part) for part in location) or "<command>"
    message = _quotable(first["msg"].removeprefix("Value error, "))  # it may quote the input
    return f"{field}: {message}"


# How pydantic names the branches of `MetadataValue` in a location: after the field and key.
_BRANCHES = ("function-", "int", "none")


def _quotable(part: str | int) -> str:
    """Text fit to quote in a reply: map keys and some messages hold the sender's text."""
    return str(part).replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()


_TAGS = frozenset(
    command.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for command in _Command.__subclasses__()
)
