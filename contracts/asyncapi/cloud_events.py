"""Pydantic models of what the relay publishes on `credits.events`, derived from the code.

The envelope is services/relay/cloud_events.py's; `data` per `type` is built from the fields
of each `Account` event class (what `domain.integration.event_data` copies), so a field added
to an event shows up here, and in docs/asyncapi.json, without anyone writing it twice.
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from domain.account import Account
from domain.commands import Identifier
from domain.integration import cloud_event_type
from services.payments.payment_events import PAYMENT_REFUNDED, PaymentRefundedData
from services.payments.payment_events import SOURCE as PAYMENTS_SOURCE
from services.relay.cloud_events import SEQUENCE_DIGITS, SOURCE

# The aggregate's bookkeeping that the relay moves into the envelope (id, subject, sequence,
# time) instead of `data`: mirrors domain.integration, and the tests check they agree.
ENVELOPE_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic"}
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BreakdownPart(_Strict):
    """One lot a spend drew from (domain.lots.Breakdown), in burn order."""

    lot_id: str
    amount: int


class _Envelope(_Strict):
    specversion: Literal["1.0"]
    # `<account>:<version>`; `<account>:<version>:granted` for the `credits.granted` view of an
    # allocation event (domain/integration.py).
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@-]+:[0-9]+(:granted)?$")]
    source: Literal[SOURCE]  # type: ignore[valid-type]
    subject: Identifier
    time: datetime
    sequence: Annotated[
        str,
        Field(
            pattern=rf"^[0-9]{{{SEQUENCE_DIGITS}}}$",
            description=(
                "CloudEvents Sequence extension: the event's stream version in "
                f"{SEQUENCE_DIGITS} zero-padded decimal digits, so text order is numeric "
                "order (from 1, consecutive per account; a `credits.granted` view repeats "
                "its fact's). Since contract 2.0.0; a deployment with "
                "CREDITS_CLOUDEVENTS_SEQUENCE=integer still publishes 1.0's JSON integer."
            ),
        ),
    ]
    datacontenttype: Literal["application/json"]
    # CloudEvents distributed-tracing extension: the trace of the command that produced the
    # event, when the command came with one (a W3C traceparent: the ledger's span).
    traceparent: (
        Annotated[str, Field(pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")] | None
    ) = None


def event_classes() -> list[type[Account.Event]]:
    """Every concrete event an account stream holds, in a stable order."""
    found: list[type[Account.Event]] = []
    waiting = list(Account.Event.__subclasses__())
    while waiting:
        cls = waiting.pop()
        found.append(cls)
        waiting += cls.__subclasses__()
    return sorted(set(found), key=type_name)


def type_name(cls: type[Account.Event]) -> str:
    # `cloud_event_type` reads only the class of its argument: a bare instance is enough.
    return cloud_event_type(object.__new__(cls))


def data_model(cls: type[Account.Event]) -> type[BaseModel]:
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name in ENVELOPE_FIELDS:
            continue
        annotation = hints[field.name]
        # The alias is gone once resolved; its name in the source says what the dicts hold.
        if field.type == "Breakdown":
            annotation = list[BreakdownPart]
        fields[field.name] = (annotation, ...)
    model: type[BaseModel] = create_model(
        f"{cls.__name__}Data",
        __base__=_Strict,
        __doc__=f"`data` of `{type_name(cls)}`: the fields of `Account.{cls.__name__}`.",
        **fields,
    )
    return model


def cloud_event_model(cls: type[Account.Event]) -> type[BaseModel]:
    name = type_name(cls)
    tag: Any = Literal[name]  # built at run time: one literal per event class
    model: type[BaseModel] = create_model(
        f"{cls.__name__}CloudEvent",
        __base__=_Envelope,
        __doc__=f"CloudEvents 1.0 structured JSON, type `{name}`.",
        type=(tag, ...),
        data=(data_model(cls), ...),
    )
    return model


class PaymentRefundedCloudEvent(_Strict):
    """CloudEvents 1.0 structured JSON, type `credits.payment_refunded`: the payment consumer
    refunded a payment the ledger refused (one per payment; no `sequence`)."""

    specversion: Literal["1.0"]
    id: Annotated[str, Field(pattern=r"^payment_refunded:[A-Za-z0-9_.:@-]+$")]
    source: Literal[PAYMENTS_SOURCE]  # type: ignore[valid-type]
    type: Literal[PAYMENT_REFUNDED]  # type: ignore[valid-type]
    subject: Identifier
    time: datetime
    datacontenttype: Literal["application/json"]
    data: PaymentRefundedData


# What the payment side publishes on `credits.events` beside the relay: type → model.
PAYMENT_EVENT_MODELS: dict[str, type[BaseModel]] = {PAYMENT_REFUNDED: PaymentRefundedCloudEvent}


def cloud_event_adapter() -> TypeAdapter[Any]:
    """Any event of `credits.events`, told apart by `type`."""
    models = (
        *(cloud_event_model(cls) for cls in event_classes()),
        *PAYMENT_EVENT_MODELS.values(),
    )
    union: Any = Annotated[typing.Union[models], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(union)
