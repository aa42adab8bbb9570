"""Every text field of every command: what parse_command accepts, PostgreSQL and JSON can carry.

Each door (Kafka records, HTTP bodies, Stripe metadata) hands its input to `parse_command`, as
bytes, text or a decoded object: here every string field of every command type gets arbitrary
text (NUL, lone surrogates, any length) through each of those forms.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.commands import parse_command
from domain.errors import ErrorCode, LedgerError

# A valid example of every command type; each string in it is a field the test replaces.
VALID: dict[str, dict[str, Any]] = {
    "open_account": {"plan": "pro"},
    "change_plan": {"plan": "pro", "effective": "now"},
    "consume": {"action": "chat", "resource": "doc-1", "metadata": {"k": "v"}},
    "reserve": {"action": "chat", "hold_id": "h-1", "ttl_seconds": 60},
    "capture": {"hold_id": "h-1"},
    "release": {"hold_id": "h-1"},
    "grant": {"credit_type": "credits", "amount": 5, "source": "admin", "reference": "r"},
    "purchase": {
        "pack": "small",
        "payment_reference": "pi_1",
        "amount_paid": 500,
        "currency": "usd",
        "top_up_id": "t-1",
    },
    "revoke": {"payment_reference": "pi_1", "reason": "refund"},
    "renew": {"period_id": "2024-01-31"},
    "configure_top_up": {"credit_type": "credits", "mode": "off"},
    "request_top_up": {"credit_type": "credits", "amount": 5},
    "fail_top_up": {"top_up_id": "t-1", "reason": "declined", "recovery_url": "https://x.test/"},
    "expire": {},
    "migrate": {"tier": "gold"},
}
# Every string field (type, and literals, are fields too: any text there must be refused).
TEXT_FIELDS = sorted(
    {
        (kind, name)
        for kind, fields in VALID.items()
        for name, value in {"type": kind, "command_id": "c", "account_id": "a", **fields}.items()
        if isinstance(value, str)
    }
    | {("consume", "metadata.key"), ("consume", "metadata.value")}
)
ANY_TEXT = st.one_of(
    # Every code point, surrogates and NUL included.
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", "\U0001f600", "é"]),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "\x00", "é"]), st.integers(100, 3000)),
)


def command_with(kind: str, field: str, text: str) -> dict[str, Any]:
    command: dict[str, Any] = {"type": kind, "command_id": "c-1", "account_id": "a", **VALID[kind]}
    if field == "metadata.key":
        command["metadata"] = {text: "v"}
    elif field == "metadata.value":
        command["metadata"] = {"k": text}
    else:
        command[field] = text
    return command


def carriable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*strings_in(k), *strings_in(v)]]
    if isinstance(value, list | tuple):
        return [s for item in value for s in strings_in(item)]
    return []


def test_every_valid_example_parses() -> None:
    for kind in VALID:
        assert parse_command(command_with(kind, "command_id", "c-1")).type == kind


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(TEXT_FIELDS), text=ANY_TEXT, form=st.sampled_from(["dict", "json"]))
def test_any_text_in_any_field_is_refused_or_carriable(
    field: tuple[str, str], text: str, form: str
) -> None:
    raw: Any = command_with(*field, text)
    if form == "json":
        # As a door that reads JSON sends it: text, and when it can be, its UTF-8 bytes.
        raw = json.dumps(raw, ensure_ascii=False)
        raw = raw.encode() if carriable(raw) else raw
    try:
        command = parse_command(raw)
    except LedgerError as error:
        assert error.code == ErrorCode.invalid_command
        assert carriable(error.message), "a refusal's message goes into a reply"
        return
    stored = command.model_dump(mode="json")
    assert all(carriable(s) for s in strings_in(stored)), stored
    # What the ledger stores and answers with it: a receipt's payload, the event, the reply.
    assert carriable(command.canonical_json())
    # Receipts stored by earlier versions hash exactly these bytes: a retry must still match.
    canonical = json.dumps(stored, sort_keys=True, separators=(",", ":"))
    assert command.canonical_json() == canonical
    assert command.payload_sha256() == hashlib.sha256(canonical.encode()).hexdigest()
    assert carriable(command.model_dump_json())


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"])
def test_nul_and_lone_surrogates_are_refused_in_every_field(field: tuple[str, str], bad: str):
    with pytest.raises(LedgerError) as refused:
        parse_command(command_with(*field, bad))
    assert refused.value.code == ErrorCode.invalid_command


@pytest.mark.parametrize(
    "field", [f for f in TEXT_FIELDS if f[1] in {"command_id", "reference", "payment_reference"}]
)
def test_a_nul_is_refused_by_field_name(field: tuple[str, str]) -> None:
    with pytest.raises(LedgerError) as refused:
        parse_command(command_with(*field, "a\x00b"))
    assert refused.value.message == f"{field[1]}: text must not contain NUL characters"


def test_json_nested_deeper_than_the_recursion_limit_is_refused() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = {"a": deep}
    for raw in (
        {"type": "consume", "command_id": "c", "account_id": "a", "metadata": deep},
        '{"type": "consume", "metadata": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}",
    ):
        with pytest.raises(LedgerError) as refused:
            parse_command(raw)
        assert refused.value.code == ErrorCode.invalid_command
