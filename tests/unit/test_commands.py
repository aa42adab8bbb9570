"""Commands are strict: integers only, bounded, no unknown fields; refusals name the field."""

from __future__ import annotations

import pytest

from domain.commands import Consume, parse_command
from domain.errors import ErrorCode, LedgerError

BASE = {"command_id": "c-1", "account_id": "user_123"}


def refused(raw: object) -> str:
    with pytest.raises(LedgerError) as caught:
        parse_command(raw)  # type: ignore[arg-type]
    assert caught.value.code == ErrorCode.invalid_command
    return caught.value.message


def test_a_consume_parses_from_json_bytes():
    command = parse_command(
        b'{"type":"consume","command_id":"c-1","account_id":"a","action":"chat"}'
    )
    assert isinstance(command, Consume) and command.quantity == 1


@pytest.mark.parametrize("quantity", [1.0, 1.5, True, "1"])
def test_a_non_integer_quantity_is_refused(quantity: object):
    assert refused({**BASE, "type": "consume", "action": "x", "quantity": quantity}).startswith(
        "quantity:"
    )


def test_an_unknown_field_is_refused_by_name():
    assert refused({**BASE, "type": "release", "hold_id": "h", "colour": 1}).startswith("colour:")


def test_an_unknown_type_is_refused():
    assert refused({**BASE, "type": "transfer"}).startswith("type:")


def test_an_account_id_outside_the_alphabet_is_refused():
    assert refused({**BASE, "account_id": "a b", "type": "expire"}).startswith("account_id:")


def test_a_command_id_longer_than_128_is_refused():
    assert refused({**BASE, "command_id": "c" * 129, "type": "expire"}).startswith("command_id:")


def test_consume_needs_an_action_or_a_credit_type_and_amount():
    assert "either action" in refused({**BASE, "type": "consume", "credit_type": "x"})
    assert "either action" in refused(
        {**BASE, "type": "consume", "action": "x", "credit_type": "y", "amount": 1}
    )


def test_metadata_is_bounded():
    metadata = {f"k{i}": "v" * 500 for i in range(20)}
    assert refused({**BASE, "type": "consume", "action": "x", "metadata": metadata}).startswith(
        "metadata"
    )


def test_an_amount_must_be_positive():
    assert refused(
        {**BASE, "type": "grant", "credit_type": "x", "amount": 0, "source": "admin"}
    ).startswith("amount:")


def test_a_naive_expiry_time_is_refused():
    assert refused(
        {
            **BASE,
            "type": "grant",
            "credit_type": "x",
            "amount": 1,
            "source": "admin",
            "expires_at": "2030-01-01T00:00:00",
        }
    ).startswith("expires_at:")


def test_currency_is_normalised_and_the_canonical_payload_ignores_field_order():
    one = parse_command(
        {
            **BASE,
            "type": "purchase",
            "pack": "p",
            "payment_reference": "pi",
            "amount_paid": 5,
            "currency": "USD",
        }
    )
    two = parse_command(
        {
            "currency": "usd",
            "amount_paid": 5,
            "payment_reference": "pi",
            "pack": "p",
            "type": "purchase",
            **BASE,
        }
    )
    assert one.payload_sha256() == two.payload_sha256()


def test_not_json_is_refused():
    assert refused(b"{not json").startswith("<command>")
